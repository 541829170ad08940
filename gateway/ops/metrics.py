"""Prometheus metrics, every name prefixed `gateway_`, on an app-owned registry.

Per-request counters are bumped once, when the ledger row is final; target
health and the ledger queue are read from their owners at scrape time, so
they cost the request path nothing. Labels are bounded: route and provider
names come from the config, never from client input or keys.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase

from gateway.clock import Clock
from gateway.core.router import Router
from gateway.limiter import Limiter
from gateway.store.ledger import LedgerWriter

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_REFUSALS = {"rate_limit_exceeded": "rate_limit", "request_exceeds_limit": "rate_limit",
             "budget_exceeded": "budget", "limiter_unavailable": "limiter_unavailable"}


class _Live:
    """Reads router health and ledger state when Prometheus scrapes."""

    def __init__(self, router: Router, ledger_ref: Callable[[], LedgerWriter | None], clock: Clock):
        self.router, self.ledger_ref, self.clock = router, ledger_ref, clock

    def collect(self) -> Iterable[Any]:
        errors = CounterMetricFamily("gateway_upstream_errors", "Failed upstream attempts by target",
                                     labels=["provider", "model"])
        attempts = CounterMetricFamily("gateway_upstream_attempts", "Upstream attempts by target",
                                       labels=["provider", "model"])
        cooling = GaugeMetricFamily("gateway_target_failures_in_a_row", "Consecutive failures by target",
                                    labels=["provider", "model"])
        for (provider, model), health in self.router.snapshot(self.clock.now()).items():
            errors.add_metric([provider, model], health.errors)
            attempts.add_metric([provider, model], health.requests)
            cooling.add_metric([provider, model], health.failures)
        yield from (errors, attempts, cooling)
        ledger: LedgerWriter | None = self.ledger_ref()
        if ledger is not None:
            yield GaugeMetricFamily("gateway_ledger_queue_depth", "Ledger rows waiting to be written",
                                    value=ledger.depth)
            yield CounterMetricFamily("gateway_ledger_dropped_rows", "Ledger rows lost past the buffer bound",
                                      value=ledger.dropped)
            yield CounterMetricFamily("gateway_ledger_rejected_rows", "Ledger rows the database refused even "
                                      "after repair, set aside", value=ledger.rejected)
            yield CounterMetricFamily("gateway_ledger_written_rows", "Ledger rows written", value=ledger.written)


class _LimiterLive:
    """The limiter's state at scrape time: is Redis answering, how often it did not, what waits for it."""

    def __init__(self, limiter: Limiter):
        self.limiter = limiter

    def collect(self) -> Iterable[Any]:
        status = self.limiter.status()
        yield GaugeMetricFamily("gateway_limiter_up", "1 while the limiter answers (always 1 for memory)",
                                value=status["up"])
        yield CounterMetricFamily("gateway_limiter_failures", "Calls to the shared limiter that failed",
                                  value=status["failures"])
        yield CounterMetricFamily("gateway_limiter_fallback_admissions",
                                  "Requests admitted on this process's own counters while Redis was away",
                                  value=status["fallback_admissions"])
        yield GaugeMetricFamily("gateway_limiter_pending_settlements",
                                "Settlements waiting for Redis to answer again", value=status["pending_settlements"])



class _TracingLive:
    """What became of the trace spans (SPEC 12), read at scrape time: delivered, or dropped and why."""

    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.counts = counts

    def collect(self) -> Iterable[Any]:
        counts = self.counts()
        yield CounterMetricFamily("gateway_trace_spans_exported", "Spans the OTLP collector accepted",
                                  value=counts["exported"])
        dropped = CounterMetricFamily("gateway_trace_spans_dropped", "Spans lost: the export queue was full, "
                                      "or the collector refused them or did not answer", labels=["reason"])
        dropped.add_metric(["queue_full"], counts["queue_full"])
        dropped.add_metric(["export_failed"], counts["export_failed"])
        yield dropped


class Metrics:
    def __init__(self, router: Router, ledger_ref: Callable[[], LedgerWriter | None], clock: Clock):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gateway_requests", "Chat completion requests by route, provider and status",
                                ["route", "provider", "status"], registry=r)
        self.latency = Histogram("gateway_request_duration_seconds", "Request latency", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds", "Time to first token (or whole answer)",
                              ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens by route and kind", ["route", "kind"], registry=r)
        self.spend = Counter("gateway_spend_usd", "Spend in USD by route", ["route"], registry=r)
        self.retries = Counter("gateway_retries", "Upstream retries by route", ["route"], registry=r)
        self.refusals = Counter("gateway_limit_refusals", "Requests refused by limits", ["reason"], registry=r)
        self.in_flight = Gauge("gateway_in_flight_requests", "Requests being served", registry=r)
        r.register(_Live(router, ledger_ref, clock))
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, row: dict[str, Any]) -> None:
        route = row.get("route") or ""
        self._child(self.requests, route, row.get("provider") or "", row["status"]).inc()
        code = row.get("error_code")
        if code in _REFUSALS:
            self._child(self.refusals, _REFUSALS[code]).inc()
        if row["status"] == "rejected":
            return
        if row.get("latency_ms") is not None:
            self._child(self.latency, route).observe(row["latency_ms"] / 1000)
        if row.get("ttft_ms") is not None:
            self._child(self.ttft, route).observe(row["ttft_ms"] / 1000)
        if row["prompt_tokens"]:
            self._child(self.tokens, route, "prompt").inc(row["prompt_tokens"])
        if row["completion_tokens"]:
            self._child(self.tokens, route, "completion").inc(row["completion_tokens"])
        if row["cost_usd"]:
            self._child(self.spend, route).inc(row["cost_usd"])
        if row["attempts"] > 1:
            self._child(self.retries, route).inc(row["attempts"] - 1)

    def watch_limiter(self, limiter: Limiter) -> None:
        self.registry.register(_LimiterLive(limiter))

    def watch_tracing(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_TracingLive(counts))

    def unauthorized(self) -> None:
        self._child(self.requests, "", "", "unauthorized").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
