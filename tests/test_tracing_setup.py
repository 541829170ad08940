"""Tracing's switch and lifetime (gateway/ops/tracing.py, SPEC 12): the setting or the environment turns it
on, off imports nothing of OpenTelemetry, what the exporter loses is counted in /metrics without waiting."""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.appkeys import TRACING
from gateway.config import parse_config
from gateway.ops.tracing import in_thread, traces_url
from tests.otlp import chat, collector, traced, traced_routes  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent


async def test_spans_the_collector_refused_are_counted_in_metrics(traced, upstream, collector):  # noqa: F811
    collector.status = 400
    key = (await traced.create_key())["key"]
    assert (await traced.post(key, chat())).status == 200
    assert await in_thread(traced.app[TRACING].flush, 10)
    text = await (await traced.http.get(f"{traced.url}/metrics")).text()
    failed = traced.app[TRACING].counts()["export_failed"]
    assert failed >= 1 and f'gateway_trace_spans_dropped_total{{reason="export_failed"}} {failed:.1f}' in text
    assert 'gateway_trace_spans_dropped_total{reason="queue_full"} 0.0' in text
    assert "gateway_trace_spans_exported_total 0.0" in text


async def test_a_full_queue_drops_spans_without_waiting_and_counts_them():
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from gateway.ops.otel import Tracing

    class Stuck(SpanExporter):   # a collector that never answers: every export waits
        def __init__(self):
            self.release = threading.Event()

        def export(self, spans):
            self.release.wait(10)
            return SpanExportResult.SUCCESS

    stuck = Stuck()
    tracing = Tracing("http://unused", "test", 1.0, max_queue=4, delay_ms=1, exporter=stuck)
    try:
        started = time.perf_counter()
        for _ in range(50):
            tracing.tracer.start_span("x").end()
        assert time.perf_counter() - started < 0.5
        assert tracing.counts()["queue_full"] >= 40
    finally:
        stuck.release.set()
        await in_thread(tracing.shutdown, 10)


def test_traces_url_from_the_setting_or_the_environment():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318/"}
    assert traces_url(None, {}) is None
    assert traces_url(None, env) == "http://env:4318/v1/traces"
    assert traces_url("http://collector:4318", env) == "http://collector:4318/v1/traces"   # the setting wins
    assert traces_url("https://x.example/otlp/v1/traces", {}) == "https://x.example/otlp/v1/traces"
    assert traces_url(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}) is None   # not a URL: off


@pytest.mark.parametrize("text,path", [
    ("settings: {tracing: {otlp_endpoint: 'collector:4318'}}", "settings.tracing.otlp_endpoint"),
    ("settings: {tracing: {sample_ratio: 2}}", "settings.tracing.sample_ratio"),
    ("settings: {tracing: {service_name: ''}}", "settings.tracing.service_name"),
    ("settings: {tracing: {endpoint: 'http://c:4318'}}", "settings.tracing.endpoint"),
])
def test_bad_tracing_settings_name_their_path(text, path):
    from gateway.config import ConfigError
    routes = "\nproviders: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m}]}}"
    with pytest.raises(ConfigError) as err:
        parse_config(text + routes)
    assert path in str(err.value)


OFF_SCRIPT = """
import asyncio, sys
from aiohttp.test_utils import TestClient, TestServer
from gateway.app import create_app
from gateway.appkeys import ServerOptions
from gateway.config import parse_config

ROUTES = "providers: {demo: {dialect: mock}}\\nroutes: {demo: {targets: [{provider: demo, model: m}]}}"

async def main():
    app = create_app(parse_config(ROUTES), ServerOptions(config_path=None, db_path=sys.argv[1], master_key="m" * 32))
    async with TestClient(TestServer(app)) as client:
        made = await client.post("/admin/keys", json={"name": "t"}, headers={"Authorization": "Bearer " + "m" * 32})
        key = (await made.json())["key"]
        for stream in (False, True):
            resp = await client.post("/v1/chat/completions", headers={"Authorization": "Bearer " + key}, json={
                "model": "demo", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status == 200, await resp.text()
            await resp.read()
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""


def test_tracing_off_imports_nothing_of_opentelemetry(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", OFF_SCRIPT, str(tmp_path / "g.db")], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().replace("'", '"')) == []


async def _timed(gw, key: str) -> float:
    started = time.perf_counter()
    resp = await gw.post(key, chat())
    assert resp.status == 200
    await resp.read()
    return time.perf_counter() - started


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("collector_is", ["dead", "slow"])
async def test_a_dead_or_slow_collector_never_delays_a_request(monkeypatch, start_gateway, upstream, collector,  # noqa: F811
                                                              collector_is):
    import gateway.ops.tracing
    monkeypatch.setattr(gateway.ops.tracing, "SHUTDOWN_WAIT", 0.3)   # the stop's wait for a collector that never takes
    if collector_is == "dead":
        url = f"http://127.0.0.1:{_dead_port()}"
    else:
        collector.hang, url = 30.0, collector.url
    off = await start_gateway()
    on = await start_gateway(routes_yaml=traced_routes(upstream.url, url), db_name="traced.db")
    assert off.app[TRACING] is None and on.app[TRACING] is not None
    gateways = {"off": (off, (await off.create_key())["key"]), "on": (on, (await on.create_key())["key"])}
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(40):
        if i == 5:   # the processor's thread is now stuck on the collector
            threading.Thread(target=on.app[TRACING].flush, daemon=True).start()
        for name, (gw, key) in gateways.items():
            times[name].append(await _timed(gw, key))
    off_ms, on_ms = (statistics.median(times[n]) * 1000 for n in ("off", "on"))
    assert on_ms < off_ms * 1.5 + 2.0, (off_ms, on_ms)   # within noise: a few ms at most, never the collector's
    assert max(times["on"]) < 1.0


def test_the_readme_yaml_line_turns_tracing_on():
    import re
    readme = (REPO / "README.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "tracing:" in b]
    routes = "providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m}]}}\n"
    tracing = parse_config(block + routes).settings.tracing
    assert traces_url(tracing.otlp_endpoint, {}) == "http://127.0.0.1:4318/v1/traces"
    assert (tracing.service_name, tracing.sample_ratio) == ("llm-gateway", 1.0)


def test_a_dead_collector_is_one_log_line_a_minute_not_one_a_retry():
    import logging

    from gateway.ops.otel import Quieter

    quieter = Quieter(every=60.0, loggers=["tests.quieter"])   # the SDK's own loggers, in the test's own
    logger = logging.getLogger("tests.quieter")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep()
    logger.addHandler(keep)
    quieter.attach()
    try:
        for i in range(5):
            logger.warning("Transient error encountered while exporting spans batch, retrying (%d)", i)
        logger.info("not a complaint")
    finally:
        quieter.detach()
    logger.warning("after detach")
    logger.removeHandler(keep)
    assert seen == ["Transient error encountered while exporting spans batch, retrying (0)", "not a complaint",
                    "after detach"]


def test_the_quieted_loggers_are_the_ones_the_sdk_complains_on():
    from opentelemetry.exporter.otlp.proto.http import trace_exporter
    from opentelemetry.sdk import _shared_internal

    from gateway.ops.otel import Quieter

    assert {trace_exporter._logger.name, _shared_internal._logger.name} == set(Quieter.LOGGERS)
