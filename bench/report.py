"""Prints the benchmark's one table (markdown) from the results.jsonl that run.sh writes.

usage: report.py results.jsonl
Ratios and added latencies compare runs made minutes apart in the same process tree, which is
what holds on a shared machine; absolute numbers drift with the machine's load.
"""
from __future__ import annotations

import json
import sys
from statistics import median


def load(path: str) -> dict:
    runs: dict = {"variants": {}}
    with open(path) as lines:
        records = list(lines)
    for line in records:
        if not line.strip():
            continue
        r = json.loads(line)
        name, kind = r["name"], r.get("kind")
        if name == "env":
            runs.setdefault("env", {}).update(r)
        elif kind in ("ns", "s", "big") and name in ("direct", "gateway"):
            runs[(name, kind, r["conc"])] = r
        elif name == "api":
            runs.setdefault("api", {}).setdefault(kind, []).append(r)
        elif kind in ("ns", "s"):
            runs["variants"].setdefault(name, []).append(r)
        else:
            runs[(name, kind)] = r
    return runs


def cpu_ms(r: dict | None) -> float | None:
    if not r or not r["wrk"]["requests"]:
        return None
    return 1000 * r["cpu_s"] / r["wrk"]["requests"]


def f(v, nd=2, unit="") -> str:
    return "-" if v is None else f"{v:.{nd}f}{unit}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def main(path: str) -> None:
    runs = load(path)
    rows = []

    def get(name, kind, conc):
        return runs.get((name, kind, conc), {}).get("wrk", {})

    conc = runs.get("env", {}).get("conc", 32)
    chunks = runs["env"].get("chunks", 20)
    # targets: issue 19's (non-stream throughput, added latency at c1, CPU per request with the access log on)
    for kind, label, target in (("ns", "non-stream", 0.25), ("s", f"stream ({chunks} chunks)", 0.25)):
        d, g = get("direct", kind, conc).get("rps"), get("gateway", kind, conc).get("rps")
        ratio = g / d if d and g is not None else None
        rows.append((f"{label} requests/s, c{conc}", f(d, 0), f(g, 0), f(ratio, 3, "x"), f">= {target}x",
                     verdict(None if ratio is None else ratio >= target)))
    for kind, label, targets in (("ns", "non-stream", (0.5, 2.0)), ("s", "stream", None)):
        d, g = get("direct", kind, 1), get("gateway", kind, 1)
        if not d or not g:
            continue
        add50, add99 = g["p50_ms"] - d["p50_ms"], g["p99_ms"] - d["p99_ms"]
        ok = None if targets is None else add50 <= targets[0] and add99 <= targets[1]
        rows.append((f"{label} latency c1, p50 / p99 ms", f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}",
                     f"{g['p50_ms']:.2f} / {g['p99_ms']:.2f}", f"{add50:+.2f} / {add99:+.2f}",
                     f"<= +{targets[0]} / +{targets[1]}" if targets else "", verdict(ok)))
    dt, gt = runs.get(("direct", "ttfc"), {}).get("probe"), runs.get(("gateway", "ttfc"), {}).get("probe")
    if dt and gt and dt["p50_ms"] is not None and gt["p50_ms"] is not None:
        added = gt["p50_ms"] - dt["p50_ms"]
        rows.append(("time to first streamed chunk c1, p50 ms", f(dt["p50_ms"]), f(gt["p50_ms"]), f"{added:+.2f}",
                     "<= +1", verdict(added <= 1)))
    ns, s = cpu_ms(runs.get(("gateway", "ns", conc))), cpu_ms(runs.get(("gateway", "s", conc)))
    rows.append((f"gateway CPU ms per request, non-stream / stream (c{conc})", "", f"{f(ns, 3)} / {f(s, 3)}", "",
                 "<= 0.30 / 0.45", verdict(None if ns is None or s is None else ns <= 0.30 and s <= 0.45)))
    d, g = get("direct", "big", conc).get("rps"), get("gateway", "big", conc).get("rps")
    if d and g:
        big = cpu_ms(runs.get(("gateway", "big", conc)))
        rows.append((f"10 KB prompt, non-stream c{conc}: requests/s / gateway CPU ms per request", f(d, 0),
                     f"{g:.0f} / {f(big, 3)}", f(g / d, 3, "x"), "", "-"))
    hwm = runs.get(("gateway", "rss"), {}).get("hwm_kb")
    rows.append(("gateway peak RSS under the load (VmHWM), MB", "", f(hwm and hwm / 1024, 0), "", "<= 100",
                 verdict(None if hwm is None else hwm / 1024 <= 100)))
    rows.extend(api_rows(runs))
    rows.extend(variant_rows(runs))
    hold = runs.get(("gateway", "hold"), {}).get("probe")
    if hold:
        ok = hold["done_ok"] == hold["streams"] and hold["open_max"] == hold["streams"] and hold["rss_max_mb"] <= 100
        rows.append((f"{hold['streams']} concurrent open streams: held / RSS MB", "",
                     f"{hold['open_max']} open at once, {hold['done_ok']} whole / {hold['rss_max_mb']:.0f}", "",
                     "all held, <= 100", verdict(ok)))   # issue 19: peak RSS at 1,000 open streams
    print("| measure | direct | gateway | gateway vs direct | target | |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    footer(runs)


# (client API, its non-stream kind, its stream kind or None)
API_KINDS = (("messages", "mns", "ms"), ("responses", "rns", "rs"), ("embeddings", "emb", None))


def api_rows(runs: dict) -> list[tuple]:
    """Each client API's CPU per request beside chat completions', from the same interleaved runs."""
    api = runs.get("api", {})
    if "ns" not in api or "s" not in api:
        return []
    chat = {kind: median(cpu_ms(r) for r in api[kind]) for kind in ("ns", "s")}
    rows = []
    for name, ns, s in API_KINDS:
        kinds = {"ns": ns, **({"s": s} if s else {})}
        if any(kind not in api for kind in kinds.values()):
            continue
        mine = {k: median(cpu_ms(r) for r in api[kind]) for k, kind in kinds.items()}
        more = {k: (mine[k] - chat[k]) / chat[k] for k in mine}
        label = "non-stream / stream" if s else "non-stream"
        rows.append((f"/v1/{name} vs chat: CPU ms per request, {label}", "",
                     " / ".join(f"{mine[k]:.3f}" for k in mine) + " (chat "
                     + " / ".join(f"{chat[k]:.3f}" for k in mine) + ")",
                     " / ".join(f"{100 * more[k]:+.1f}%" for k in mine), "<= +15%",
                     verdict(max(more.values()) <= 0.15)))
    return rows


def variant_rows(runs: dict) -> list[tuple]:
    v = runs["variants"]
    if "base" not in v:
        return []
    base_rps = median(r["wrk"]["rps"] for r in v["base"])
    base_cpu = median(cpu_ms(r) for r in v["base"])
    rows = []
    off = v.get("ledger_off")
    if off:
        rps, cpu = median(r["wrk"]["rps"] for r in off), median(cpu_ms(r) for r in off)
        fewer = 1 - cpu / base_cpu   # the gateway is CPU-bound: requests per CPU-second, steadier than rps
        rows.append(("ledger on vs off: non-stream requests/s (CPU ms per request)", "",
                     f"{base_rps:.0f} / {rps:.0f} ({base_cpu:.3f} / {cpu:.3f})",
                     f"{100 * fewer:.1f}% fewer per CPU-second", "<= 10% fewer", verdict(fewer <= 0.10)))
    for name, label in (("keys", "1 key vs {n} keys"), ("routes", "1 route vs {n} routes"),
                        ("access_log_off", "access log on (json) vs off")):
        if name not in v:
            continue
        cpu = median(cpu_ms(r) for r in v[name])
        more = (cpu - base_cpu) / base_cpu
        n = runs.get("env", {}).get(f"many_{name}", "many")
        rows.append((label.format(n=f"{n:,}" if isinstance(n, int) else n) + ": CPU ms per request", "",
                     f"{base_cpu:.3f} / {cpu:.3f}", f"{100 * more:+.1f}%",
                     "" if name == "access_log_off" else "<= +10%",
                     "-" if name == "access_log_off" else verdict(more <= 0.10)))
    return rows


def footer(runs: dict) -> None:
    env = runs.get("env", {})
    problems = []
    for key, r in runs.items():
        if isinstance(key, tuple) and "wrk" in r and (r["wrk"]["bad"] or r["wrk"]["socket_errors"]):
            problems.append(f"{'/'.join(map(str, key))}: {r['wrk']['bad']} bad, {r['wrk']['socket_errors']} socket "
                            f"errors ({r['wrk'].get('sample', '')[:80]})")
    for name, rs in [*runs["variants"].items(), *(("api " + k, v) for k, v in runs.get("api", {}).items())]:
        for r in rs:
            if r["wrk"]["bad"] or r["wrk"]["socket_errors"]:
                problems.append(f"{name}: {r['wrk']['bad']} bad, {r['wrk']['socket_errors']} socket errors")
    print()
    print(f"{env.get('dur', '?')} s per wrk run; load average before {env.get('load_before', '?')}, "
          f"after {env.get('load_after', '?')}. CPU = gateway process utime+stime over the run / requests; "
          f"variants are fresh gateways, non-stream c{env.get('conc', 32)}, medians of interleaved runs; their "
          f"requests/s swing with the machine's load, so the ledger's verdict uses CPU per request.")
    for p in problems:
        print(f"errors: {p}")


if __name__ == "__main__":
    main(sys.argv[1])
