"""The access log of a served gateway: one whole line per model request, written in batches.

`gateway serve` logs through the one handler `logs.setup` makes, so its access lines take the
batched path (formatted straight from the ledger row, one write per batch): these run the real
process and read what it wrote, in both formats, including the lines still buffered at a stop.
"""
from __future__ import annotations

import json
import time

import pytest

from gateway.ops.logs import JsonFormatter, TextFormatter
from tests.procs import GatewayProcess

ROUTES = ("providers:\n  demo: {dialect: mock}\nroutes:\n  demo:\n"
          "    targets: [{provider: demo, model: chat, price: {input: 0.15, output: 0.6}}]\n")
ASK = {"model": "demo", "messages": [{"role": "user", "content": "a secret prompt"}]}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_every_request_is_one_whole_line_even_those_buffered_at_a_stop(tmp_path, fmt):
    proc = GatewayProcess(tmp_path, routes=ROUTES, args=("--log-format", fmt)).start()
    try:
        for i in range(40):
            assert proc.post_json({**ASK, "stream": i % 2 == 1})[0] == 200
        time.sleep(0.3)    # the first batches go out on their timer
        early = [ln for ln in proc.log.read_text().splitlines() if "gateway.access" in ln]
        for _ in range(5):
            assert proc.post_json(ASK)[0] == 200
    finally:
        assert proc.stop() == 0
    lines = [ln for ln in proc.log.read_text().splitlines() if "gateway.access" in ln]
    assert len(early) == 40 and len(lines) == 45, (len(early), len(lines))
    assert "a secret prompt" not in proc.log.read_text()
    if fmt == "json":
        rows = [json.loads(ln) for ln in lines]
        assert all(r["logger"] == "gateway.access" and r["msg"] == "request" and r["level"] == "info" for r in rows)
        assert all(r["route"] == "demo" and r["status"] == "ok" and r["key_prefix"] for r in rows)
        assert [r["stream"] for r in rows[:4]] == [0, 1, 0, 1]
        assert len({r["request_id"] for r in rows}) == 45
        assert all(r["ts"].endswith("Z") and len(r["ts"]) == 24 for r in rows)
    else:
        assert all(" info    gateway.access: request request_id=" in ln and "route=demo" in ln for ln in lines)


def test_the_batched_line_is_the_line_the_formatter_writes():
    """Same keys, same order, same text as the logging path (`logs.access`), in both formats."""
    import logging

    from gateway.ops.logs import AccessLog, _fields

    row = {"request_id": "r1", "key_id": "k1", "route": "demo", "provider": "demo", "upstream_model": "chat",
           "stream": 0, "status": "ok", "http_status": 200, "error_code": None, "prompt_tokens": 12,
           "completion_tokens": 20, "total_tokens": 32, "cost_usd": 0.000013799999999999998, "latency_ms": 1.5,
           "ttft_ms": 1.2, "attempts": 1}
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = _fields(row, "sk-abcdef")
    for formatter in (JsonFormatter(), TextFormatter()):
        expected = formatter.format(record)
        got = AccessLog()._line(formatter, _fields(row, "sk-abcdef")).rstrip("\n")
        if isinstance(formatter, JsonFormatter):
            expected_data, got_data = json.loads(expected), json.loads(got)
            expected_data.pop("ts"), got_data.pop("ts")
            assert list(got_data) == list(expected_data) and got_data == expected_data
        else:
            assert got.split(" ", 1)[1] == expected.split(" ", 1)[1]
