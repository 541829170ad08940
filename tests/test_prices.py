"""The packaged price table (gateway/prices.json): used for a target that names a known model and says no
`price`, never over a target's own `price`; `gateway check` says which targets it priced and warns of any
target priced by nothing (cost 0 is never silent).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources

import pytest

from gateway.config import Price, parse_config
from gateway.prices import packaged, price_report, target_price
from tests.fakes import Cache

TABLE = json.loads(resources.files("gateway").joinpath("prices.json").read_text(encoding="utf-8"))


def test_the_table_says_its_source_and_date_and_every_price_is_sane():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", TABLE["date"]) and "pricing" in TABLE["source"]
    providers = {"gpt-": 0, "claude-": 0, "deepseek-": 0, "gemini-": 0, "mistral-": 0}
    for name, entry in TABLE["models"].items():
        price = Price(**entry)
        assert price.input > 0 and price.output > 0, name
        assert price.cached_input is None or price.cached_input < price.input, name   # a cache read is cheaper
        assert price.cache_write is None or price.cache_write > price.input, name     # a write dearer (Anthropic)
        providers.update({p: providers[p] + 1 for p in providers if name.startswith(p)})
    assert all(providers.values()), providers
    for name in ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4o-mini", "deepseek-chat", "gemini-2.5-flash"):
        assert TABLE["models"][name].get("cached_input") is not None, name
    assert all("cache_write" in e for n, e in TABLE["models"].items() if n.startswith("claude-"))


@pytest.mark.parametrize("model, expected", [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),    # a dated snapshot
    ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),      # the moving alias of a table entry
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),             # an exact entry wins over the stripped name
    ("mistral-large-latest", None),                         # moves between models at different prices
    ("my-finetune", None),
])
def test_lookup_by_exact_name_then_without_a_date(model, expected):
    found = packaged().lookup(model)
    assert found == (Price(**TABLE["models"][expected]) if expected else None)


def routes(url: str) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
  claude: {{dialect: anthropic, base_url: "{url}", api_key: sk-ant-upstream-secret}}
routes:
  mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
  mini-own: {{targets: [{{provider: up, model: gpt-4o-mini, price: {{input: 7.0, output: 9.0}}}}]}}
  sonnet: {{targets: [{{provider: claude, model: claude-sonnet-4-5-20250929}}]}}
  unknown: {{targets: [{{provider: up, model: my-finetune}}]}}
"""


@pytest.mark.parametrize("route, by_hand", [
    # gpt-4o-mini from the table: input 0.15, cached 0.075, output 0.60; 800 of the 1,000 prompt tokens cached
    ("mini", (200 * 0.15 + 800 * 0.075 + 50 * 0.60) / 1e6),
    # its own price wins, and says nothing of a cache: every prompt token at its input
    ("mini-own", (1000 * 7.0 + 50 * 9.0) / 1e6),
    # claude-sonnet-4-5 from the table: input 3, reads 0.30, writes 3.75, output 15 (800 read, 100 written)
    ("sonnet", (100 * 3.0 + 800 * 0.30 + 100 * 3.75 + 50 * 15.0) / 1e6),
    ("unknown", 0.0),
])
async def test_the_table_prices_a_target_without_price_and_its_own_price_wins(start_gateway, upstream, route,
                                                                              by_hand):
    upstream.cache = Cache(fresh=100, read=800, write=100, output=50)
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    resp = await gw.post(key, {"model": route, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200, await resp.text()
    (row,) = await gw.rows("SELECT cost_usd FROM requests WHERE request_id = ?", (resp.headers["x-request-id"],))
    assert row["cost_usd"] == pytest.approx(by_hand, rel=1e-12)


def test_target_price_says_where_each_price_came_from():
    config = parse_config(routes("http://127.0.0.1:9"))
    sources = {name: target_price(route.targets[0])[1] for name, route in config.routes.items()}
    assert sources == {"mini": "table", "mini-own": "config", "sonnet": "table", "unknown": "none"}


def test_gateway_check_names_the_table_priced_targets_and_warns_of_unpriced_ones(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(routes("http://127.0.0.1:9"))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok")
    assert lines[1:] == price_report(parse_config(path.read_text()))
    table_lines = [line for line in lines if "priced from the price table" in line]
    assert [line.split(":")[0] for line in table_lines] == ["routes.mini.targets[0]", "routes.sonnet.targets[0]"]
    assert TABLE["date"] in table_lines[0]
    (warning,) = [line for line in lines if line.startswith("warning:")]
    assert "routes.unknown.targets[0]" in warning and "my-finetune" in warning and "cost 0" in warning
