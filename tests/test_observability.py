"""/metrics moves by the right amounts; access log lines are JSON and carry no key material."""
from __future__ import annotations

import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.logs import JsonFormatter, TextFormatter
from tests.fakes import Behaviour


async def _scrape(gateway) -> dict[tuple, float]:
    async with gateway.http.get(f"{gateway.url}/metrics") as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/plain")
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _get(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_tokens_spend_and_refusals(gateway, upstream):
    key = (await gateway.create_key(rpm=3))["key"]
    before = await _scrape(gateway)
    msg = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        assert (await gateway.post(key, {"model": "gpt", "messages": msg})).status == 200
    upstream.queue(Behaviour(status=503))
    assert (await gateway.post(key, {"model": "gpt", "messages": msg})).status == 200      # one retry
    assert (await gateway.post(key, {"model": "gpt", "messages": msg})).status == 429      # rpm 3
    assert (await gateway.post("sk-wrong", {"model": "gpt", "messages": msg})).status == 401
    after = await _scrape(gateway)
    delta = lambda name, **labels: _get(after, name, **labels) - _get(before, name, **labels)  # noqa: E731
    assert delta("gateway_requests_total", route="gpt", provider="up", status="ok") == 3
    assert delta("gateway_requests_total", route="gpt", provider="", status="rejected") == 1
    assert delta("gateway_requests_total", route="", provider="", status="unauthorized") == 1
    assert delta("gateway_tokens_total", route="gpt", kind="prompt") == 33
    assert delta("gateway_tokens_total", route="gpt", kind="completion") == 21
    assert abs(delta("gateway_spend_usd_total", route="gpt") - 3 * (11 * 1.0 + 7 * 2.0) / 1e6) < 1e-12
    assert delta("gateway_retries_total", route="gpt") == 1
    assert delta("gateway_limit_refusals_total", reason="rate_limit") == 1
    assert delta("gateway_upstream_errors_total", provider="up", model="up-model") == 1
    assert delta("gateway_request_duration_seconds_count", route="gpt") == 3
    assert _get(after, "gateway_in_flight_requests") == 0
    assert ("gateway_ledger_queue_depth", ()) in after
    text = json.dumps(list(after))
    assert key not in text and "upstream-secret" not in text


async def test_access_log_lines_are_json_without_secrets(gateway, caplog):
    created = await gateway.create_key()
    secret = created["key"]
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        await gateway.post(secret, {"model": "gpt", "messages": [{"role": "user", "content": "a secret prompt"}]})
        await gateway.post(secret, {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    records = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(records) == 2
    for record in records:
        line = JsonFormatter().format(record)
        data = json.loads(line)
        assert data["key_id"] == created["id"] and data["key_prefix"] == secret[:10]
        assert data["route"] == "gpt" and data["status"] == "ok" and data["attempts"] == 1
        assert data["total_tokens"] > 0 and data["latency_ms"] >= 0 and data["request_id"]
        assert secret not in line and "upstream-secret" not in line and "a secret prompt" not in line
        text = TextFormatter().format(record)
        assert "route=gpt" in text and secret not in text


def test_log_messages_are_redacted():
    record = logging.LogRecord("gateway.core.upstream", logging.ERROR, __file__, 1,
                               "upstream said: bad key sk-abcdefghijklmnop and Bearer abcdefghijkl", None, None)
    line = JsonFormatter().format(record)
    assert "sk-abcdefghijklmnop" not in line and "Bearer abcdefghijkl" not in line and "[redacted]" in line
