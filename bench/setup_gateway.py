"""Writes a bench routes.yaml and a database with keys; prints the secret of the key to use.

usage: setup_gateway.py DIR UPSTREAM_V1_URL [--routes N] [--keys N]

The routes point at the fake upstream: `gpt-mock` (the measured one), `gpt-mock-ttfc` and
`gpt-mock-hold` (see upstream.py), `gpt-mock-reasoning` (for the peer harness's checks in
../shared/bench), and filler routes up to N in all, to show that the size
of the table costs nothing per request. Limits are on, with caps high enough that the
bench is never refused; prices are set, so every request books a cost against a budget.
Keys are made through the gateway's own key functions, as `gateway keys create` does.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from gateway.config import load_config
from gateway.keys import KeyLimits, create_key
from gateway.store import open_store

RPM, TPM, BUDGET = 1_000_000_000, 1_000_000_000_000, 1_000_000_000.0
MEASURED = ("gpt-mock", "gpt-mock-ttfc", "gpt-mock-hold", "gpt-mock-reasoning")


def routes_yaml(upstream: str, total: int) -> str:
    lines = [
        "settings:",
        "  limits: {default_rpm: 100, default_tpm: 10000, default_budget: 100,",
        f"           max_rpm: {RPM}, max_tpm: {TPM}, max_budget: {BUDGET:.0f}}}",
        "providers:",
        f'  up: {{dialect: openai, base_url: "{upstream}", api_key: bench-upstream-secret}}',
        "routes:",
    ]
    for name in MEASURED:
        lines.append(f"  {name}: {{targets: [{{provider: up, model: {name}, price: {{input: 0.15, output: 0.6}}}}]}}")
    for i in range(max(total - len(MEASURED), 0)):
        lines.append(f"  filler-{i}: {{aliases: [filler-alias-{i}], targets: [{{provider: up, model: m{i}}}]}}")
    return "\n".join(lines) + "\n"


async def make_keys(db: str, config: str, count: int) -> str:
    caps = load_config(config).settings.limits
    limits = KeyLimits(rpm=RPM, tpm=TPM, budget=BUDGET, period="monthly")
    store = await open_store(db)
    try:
        now = time.time()
        first = ""
        for i in range(count):
            _, secret = await create_key(store, f"bench-{i}", limits, caps, now)
            first = first or secret
        return first
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("upstream")
    parser.add_argument("--routes", type=int, default=len(MEASURED))
    parser.add_argument("--keys", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "routes.yaml"
    config.write_text(routes_yaml(args.upstream, args.routes))
    for stale in out.glob("gateway.db*"):
        stale.unlink()
    print(asyncio.run(make_keys(str(out / "gateway.db"), str(config), args.keys)))


if __name__ == "__main__":
    main()
