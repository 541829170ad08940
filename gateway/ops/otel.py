"""OpenTelemetry spans of model requests (SPEC 12), with the GenAI semantic conventions.

Imported only when tracing is on (`gateway.ops.tracing` decides, and imports this module then), so
with tracing off nothing of OpenTelemetry is loaded. `Tracing` owns the tracer provider: a batching
processor with a bounded queue (a span that finds it full is dropped and counted, never waited for)
and the OTLP/HTTP exporter, which runs on the processor's own thread, so a collector that is down or
slow costs the request path nothing. `Trace` is one request's spans: a SERVER span from `begin` to
`end` (whose attributes come from the finished ledger row), one CLIENT span per upstream attempt.

What a span may hold is decided here and only here: names and numbers from the config and the
ledger row (route, provider, upstream model, key id, tokens, cost, short error codes). Never a
prompt, a completion, a header value or a key.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from gateway.core.attempts import Plan
    from gateway.core.table import TargetEntry
    from gateway.dialects.base import Completion, Delta, SSEEvent, StreamDecoder

log = logging.getLogger("gateway.ops.otel")

MAX_QUEUE = 2048          # spans waiting for the exporter; past it a new span is dropped (and counted)
SCHEDULE_DELAY_MS = 1000  # how long the processor lets spans gather before an export
EXPORT_TIMEOUT_S = 5.0    # one export request to the collector, retries included


class CountingExporter(SpanExporter):
    """The OTLP exporter, counting what it delivered and what it lost; and the processor's queue depth,
    so a span that arrives to a full queue is counted as dropped (the processor itself only logs it)."""

    def __init__(self, inner: SpanExporter, max_queue: int):
        self.inner, self.max_queue = inner, max_queue
        self.exported = self.failed = self.queue_full = 0
        self._pending = 0
        self._lock = threading.Lock()

    def queued(self) -> None:
        """A sampled span went to the processor's queue (on the event loop's thread)."""
        with self._lock:
            if self._pending >= self.max_queue:
                self.queue_full += 1   # the processor drops one to make room: the count is what matters
            else:
                self._pending += 1

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._pending = max(self._pending - len(spans), 0)
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # the exporter's own failure: counted, never raised into the processor
            log.warning("span export failed: %s", type(exc).__name__)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _Batch(BatchSpanProcessor):
    """The SDK's batching processor, telling the counting exporter about each span it queues."""

    def __init__(self, exporter: CountingExporter, max_queue: int, delay_ms: float):
        super().__init__(exporter, max_queue_size=max_queue, schedule_delay_millis=delay_ms,
                         max_export_batch_size=min(512, max_queue))
        self._counting = exporter

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._counting.queued()
        super().on_end(span)


class Quieter(logging.Filter):
    """The SDK's complaints about the collector (each retry, each lost batch, a full queue), at most one
    every `every` seconds: a dead collector is one line a minute in the log, and every loss is in /metrics."""

    LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk._shared_internal")

    def __init__(self, every: float = 60.0, loggers: Sequence[str] = LOGGERS):
        super().__init__()
        self.every, self.loggers, self._last = every, loggers, -every

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        return True

    def attach(self) -> None:
        for name in self.loggers:
            logging.getLogger(name).addFilter(self)

    def detach(self) -> None:
        for name in self.loggers:
            logging.getLogger(name).removeFilter(self)


class Tracing:
    """The app's tracer provider and exporter (under `appkeys.TRACING` while tracing is on)."""

    def __init__(self, url: str, service_name: str, sample_ratio: float, *, max_queue: int = MAX_QUEUE,
                 delay_ms: float = SCHEDULE_DELAY_MS, exporter: SpanExporter | None = None):
        inner = exporter or OTLPSpanExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S)
        self.exporter = CountingExporter(inner, max_queue)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                       sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
        self.provider.add_span_processor(_Batch(self.exporter, max_queue, delay_ms))
        self.tracer = self.provider.get_tracer("gateway")
        self.propagator = TraceContextTextMapPropagator()
        self.quieter = Quieter()
        self.quieter.attach()

    def begin(self, headers: Mapping[str, str], endpoint: str, request_id: str) -> Trace | None:
        """The SERVER span of one model request; a valid `traceparent` in `headers` is its parent."""
        try:
            return Trace(self, headers, endpoint, request_id)
        except Exception as exc:  # a bug of ours in tracing: the request goes on untraced
            log.warning("could not trace a request: %s", type(exc).__name__)
            return None

    def counts(self) -> dict[str, int]:
        """What became of the spans so far, for /metrics."""
        e = self.exporter
        return {"exported": e.exported, "export_failed": e.failed, "queue_full": e.queue_full}

    def flush(self) -> bool:
        """Export every queued span now (blocking: call it from a thread)."""
        return self.provider.force_flush()

    def shutdown(self) -> None:
        """Export what is queued and stop (blocking: call it from a thread)."""
        try:
            self.provider.shutdown()
        finally:
            self.quieter.detach()


def operation(endpoint: str) -> str:
    """gen_ai.operation.name of a ledger `endpoint`: every client API but embeddings is a chat."""
    return "embeddings" if endpoint == "embeddings" else "chat"


def _failure_type(kind: str, status: int | None) -> str:
    """error.type of a failed attempt: the upstream's HTTP status, or what went wrong on the wire."""
    return str(status) if status is not None and kind in ("status", "auth") else kind


class Trace:
    """One request's spans. Every method swallows its own failures: tracing never fails a request."""

    __slots__ = ("_tracing", "_op", "_span", "_ctx", "_attempt", "_attempts", "_finish")

    def __init__(self, tracing: Tracing, headers: Mapping[str, str], endpoint: str, request_id: str):
        self._tracing, self._op = tracing, operation(endpoint)
        self._attempt: Span | None = None
        self._attempts = 0
        self._finish: list[str] = []
        parent: Context | None = None
        if "traceparent" in headers:
            parent = tracing.propagator.extract({"traceparent": headers["traceparent"],
                                                 "tracestate": headers.get("tracestate", "")})
        self._span = tracing.tracer.start_span(self._op, context=parent, kind=SpanKind.SERVER, attributes={
            "gen_ai.operation.name": self._op, "gateway.endpoint": endpoint, "gateway.request_id": request_id})
        self._ctx = set_span_in_context(self._span)

    # -- attempts ------------------------------------------------------------------------------
    def attempt(self, target: TargetEntry, chosen: Plan) -> Plan:
        """A CLIENT span for the attempt about to send `chosen`; returns it with the span's traceparent
        among its headers (and a reader that notes the finish reason)."""
        try:
            return self._attempt_span(target, chosen)
        except Exception as exc:  # a bug of ours in tracing: the request goes on untraced
            log.warning("could not trace an upstream attempt: %s", type(exc).__name__)
            return chosen

    def _attempt_span(self, target: TargetEntry, chosen: Plan) -> Plan:
        self._close_attempt("superseded")
        self._attempts += 1
        self._finish.clear()
        attributes: dict[str, Any] = {"gen_ai.operation.name": self._op, "gen_ai.provider.name": target.provider,
                                      "gen_ai.request.model": chosen.model, "gateway.attempt": self._attempts}
        url = urlsplit(chosen.request.url)
        if url.scheme in ("http", "https") and url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        span = self._attempt = self._tracing.tracer.start_span(f"{self._op} {chosen.model}", context=self._ctx,
                                                               kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        self._tracing.propagator.inject(carrier, context=set_span_in_context(span))
        request = replace(chosen.request, headers={**chosen.request.headers, **carrier})
        if self._op != "chat":
            return replace(chosen, request=request)
        return replace(chosen, request=request, parse=self._noting(chosen.parse or target.dialect.parse_response))

    def _noting(self, parse: Callable[[Any], Completion]) -> Callable[[Any], Completion]:
        def noted(data: Any) -> Completion:
            done = parse(data)
            self._finish[:] = [done.finish_reason]
            return done
        return noted

    def watch(self, decoder: StreamDecoder) -> StreamDecoder:
        """The stream decoder of the current attempt, noting the finish reason as it passes."""
        return _Watched(decoder, self._finish)

    def failed(self, kind: str, status: int | None) -> None:
        """The current attempt failed (`kind` as `AttemptFailed` says, `status` the upstream's HTTP status)."""
        span, self._attempt = self._attempt, None
        if span is None:
            return
        try:
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            span.set_attribute("error.type", _failure_type(kind, status))
            span.set_status(Status(StatusCode.ERROR))
            span.end()
        except Exception as exc:
            log.warning("could not end an attempt span: %s", type(exc).__name__)

    def _close_attempt(self, why: str) -> None:
        span, self._attempt = self._attempt, None
        if span is not None:
            span.set_attribute("error.type", why)
            span.set_status(Status(StatusCode.ERROR))
            span.end()

    # -- the end -------------------------------------------------------------------------------
    def end(self, row: Mapping[str, Any]) -> None:
        """The request is over: its ledger `row` says everything the spans keep."""
        try:
            self._end(row)
        except Exception as exc:  # a bug of ours in tracing: the ledger row still goes out
            log.warning("could not end a request span: %s", type(exc).__name__)

    def _end(self, row: Mapping[str, Any]) -> None:
        span, status = self._span, row["status"]
        attributes = _row_attributes(row, self._finish if self._op == "chat" else [])
        if row.get("route"):
            span.update_name(f"{self._op} {row['route']}")
        span.set_attributes(attributes)
        if row.get("stream") and row.get("ttft_ms") is not None:   # counted back from now: the row's clock
            now = time.time_ns()
            before = int((row.get("latency_ms", 0.0) - row["ttft_ms"]) * 1_000_000)
            started = span.start_time if isinstance(span, ReadableSpan) and span.start_time else now
            span.add_event("gen_ai.first_token", timestamp=min(max(now - before, started), now))
        attempt, self._attempt = self._attempt, None
        if attempt is not None:   # the attempt that answered (or was cut short with the request)
            attempt.set_attributes({k: v for k, v in attributes.items()   # what it asked for stays its own
                                    if k.startswith("gen_ai.") and k != "gen_ai.request.model"})
            if status != "ok":
                attempt.set_attribute("error.type", "cancelled" if status == "cancelled" else
                                      row.get("error_code") or "error")
                attempt.set_status(Status(StatusCode.ERROR))
            attempt.end()
        if status in ("error", "rejected"):
            span.set_attribute("error.type", row.get("error_code") or "error")
        elif status == "cancelled":
            span.set_attribute("error.type", "cancelled")
        if status == "error" or (row.get("http_status") or 0) >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _row_attributes(row: Mapping[str, Any], finish: list[str]) -> dict[str, Any]:
    """The GenAI and gateway attributes of a finished request, from its ledger row."""
    attributes: dict[str, Any] = {"gateway.key_id": row["key_id"], "gateway.attempts": row["attempts"],
                                  "gateway.cost_usd": float(row["cost_usd"]), "gateway.status": row["status"]}
    for name, column in (("gen_ai.request.model", "route"), ("gen_ai.provider.name", "provider"),
                         ("gen_ai.response.model", "upstream_model"), ("http.response.status_code", "http_status")):
        if row.get(column) is not None:
            attributes[name] = row[column]
    if row["status"] != "rejected":   # admitted: its tokens are booked (zero when nothing came back)
        attributes["gen_ai.usage.input_tokens"] = row["prompt_tokens"]
        attributes["gen_ai.usage.output_tokens"] = row["completion_tokens"]
        if row.get("cached_tokens"):
            attributes["gen_ai.usage.cache_read.input_tokens"] = row["cached_tokens"]
    if finish and row["status"] == "ok":
        attributes["gen_ai.response.finish_reasons"] = finish
    return attributes


class _Watched:
    """A stream decoder that notes the finish reason of the deltas it yields (tracing on only)."""

    __slots__ = ("_inner", "_finish")

    def __init__(self, inner: StreamDecoder, finish: list[str]):
        self._inner, self._finish = inner, finish

    def _note(self, deltas: list[Delta]) -> list[Delta]:
        for delta in deltas:
            if delta.finish_reason:
                self._finish[:] = [delta.finish_reason]
        return deltas

    def feed(self, event: SSEEvent) -> list[Delta]:
        return self._note(self._inner.feed(event))

    def finish(self) -> list[Delta]:
        return self._note(self._inner.finish())

    @property
    def done(self) -> bool:
        return self._inner.done
