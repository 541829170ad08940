"""A fake OpenTelemetry collector on a real port: OTLP/HTTP `POST /v1/traces`, decoded with opentelemetry-proto.

It keeps every span it was sent (as plain dicts: ids in hex, attributes as Python values) and the raw
bodies, so a test can look for text that must never be there. `status` and `hang` script its answers.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gateway.appkeys import TRACING
from gateway.ops.tracing import in_thread
from tests.conftest import default_routes

PROMPT = "tell me about the blue heron at midnight"   # never in a span
SERVER, CLIENT = 2, 3      # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2           # opentelemetry.proto.trace.v1.Status.StatusCode


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, int]]
    start: int
    end: int
    status: int
    service: str
    trace_state: str = ""

    @property
    def ids(self) -> tuple[str, str]:
        return self.trace_id, self.span_id


def ids(traceparent: str) -> tuple[str, str]:
    """The trace and parent span ids a W3C `traceparent` header names, once its version and flags are checked."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1, traceparent   # sampled
    return trace_id, span_id


@dataclass
class FakeCollector:
    url: str = ""
    spans: list[Span] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    status: int = 200     # what it answers
    hang: float = 0.0     # seconds it waits before answering, or until the server stops
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._handle)
        app.on_shutdown.append(self._stop)
        return app

    async def _stop(self, app: web.Application) -> None:
        """A hanging answer ends as the server stops, not when the exporter gives up (5 s of each teardown)."""
        self._stopping.set()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        encoding = request.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.hang and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.hang)
        if self.status != 200:
            return web.Response(status=self.status, text="refused")
        self.bodies.append(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            resource = {kv.key: value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(Span(
                        s.name, s.kind, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                        {kv.key: value(kv.value) for kv in s.attributes},
                        [(e.name, e.time_unix_nano) for e in s.events], s.start_time_unix_nano,
                        s.end_time_unix_nano, s.status.code, resource.get("service.name", ""), s.trace_state))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def of_kind(self, kind: int) -> list[Span]:
        return [s for s in self.spans if s.kind == kind]

    def children(self, parent: Span) -> list[Span]:
        return sorted((s for s in self.spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id),
                      key=lambda s: s.start)

    def tree(self) -> str:
        """The span tree as text, each span with its kind, duration and attributes (the README shows one)."""
        lines: list[str] = []
        ids = {s.span_id for s in self.spans}

        def show(span: Span, depth: int) -> None:
            kind = {SERVER: "SERVER", CLIENT: "CLIENT"}.get(span.kind, str(span.kind))
            pad = "  " * depth
            lines.append(f"{pad}{span.name}  [{kind}, {(span.end - span.start) / 1e6:.1f} ms]")
            for k, v in sorted(span.attributes.items()):
                lines.append(f"{pad}    {k} = {v!r}")
            for name, t in span.events:
                lines.append(f"{pad}    event {name} at +{(t - span.start) / 1e6:.1f} ms")
            for child in self.children(span):
                show(child, depth + 1)

        for root in sorted((s for s in self.spans if s.parent_span_id not in ids), key=lambda s: s.start):
            show(root, 0)
        return "\n".join(lines)


@pytest.fixture
async def collector(aiohttp_server) -> FakeCollector:
    fake = FakeCollector()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


def traced_routes(upstream_url: str, endpoint: str, extra: str = "") -> str:
    return f"settings:\n  tracing: {{otlp_endpoint: \"{endpoint}\"{extra}}}\n" + default_routes(upstream_url)


@pytest.fixture
async def traced(start_gateway, upstream, collector):
    return await start_gateway(routes_yaml=traced_routes(upstream.url, collector.url))


async def exported(gw: Any, collector: FakeCollector, servers: int) -> list[Span]:
    """Flush until `servers` SERVER spans reached the collector (a stream's span ends just after its last byte)."""
    tracing = gw.app[TRACING]
    for _ in range(200):
        assert await in_thread(tracing.flush, 10)
        found = collector.of_kind(SERVER)
        if len(found) >= servers:
            return sorted(found, key=lambda s: s.start)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(collector.of_kind(SERVER))} server spans, expected {servers}")


def chat(stream: bool = False, model: str = "gpt") -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 20}
    return {**body, "stream": True, "stream_options": {"include_usage": True}} if stream else body
