"""Prometheus metrics, every name prefixed `gateway_`, on an app-owned registry.

Per-request counters are bumped once, when the ledger row is final; target
health and the ledger queue are read from their owners at scrape time, so
they cost the request path nothing. Labels are bounded: route and provider
names come from the config, never from client input or keys.
"""
from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

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


class _Tallies:
    """The per-request counters as plain numbers, turned into metric families only when Prometheus scrapes.

    prometheus_client's Counter and Histogram take a lock on every increment; a request bumped eight of
    them. Everything here runs on the event loop, scrapes included, so plain numbers need no lock.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.refusals: dict[str, int] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.spend: dict[str, float] = {}
        self.retries: dict[str, int] = {}
        self.latency: dict[str, list[float]] = {}   # per route: a count per bucket (the last is +Inf), then the sum
        self.ttft: dict[str, list[float]] = {}
        self.in_flight = 0

    def collect(self) -> Iterable[Any]:
        requests = CounterMetricFamily("gateway_requests", "Chat completion requests by route, provider and status",
                                       labels=["route", "provider", "status"])
        for (route, provider, status), n in self.requests.items():
            requests.add_metric([route, provider, status], n)
        yield requests
        yield _histogram("gateway_request_duration_seconds", "Request latency", self.latency)
        yield _histogram("gateway_time_to_first_token_seconds", "Time to first token (or whole answer)", self.ttft)
        tokens = CounterMetricFamily("gateway_tokens", "Tokens by route and kind", labels=["route", "kind"])
        for (route, kind), count in self.tokens.items():
            tokens.add_metric([route, kind], count)
        yield tokens
        sums: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
            ("gateway_spend_usd", "Spend in USD by route", "route", self.spend),
            ("gateway_retries", "Upstream retries by route", "route", self.retries),
            ("gateway_limit_refusals", "Requests refused by limits", "reason", self.refusals))
        for name, doc, label, values in sums:
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, value in values.items():
                family.add_metric([key], value)
            yield family
        yield GaugeMetricFamily("gateway_in_flight_requests", "Requests being served", value=self.in_flight)


_BOUNDS = [repr(float(b)) for b in _LATENCY_BUCKETS] + ["+Inf"]   # as prometheus_client writes `le`


def _histogram(name: str, doc: str, routes: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["route"])
    for route, counts in routes.items():
        cumulative = list(itertools.accumulate(counts[:-1]))
        family.add_metric([route], list(zip(_BOUNDS, cumulative, strict=True)), sum_value=counts[-1])
    return family


def _observe(routes: dict[str, list[float]], route: str, seconds: float) -> None:
    counts = routes.get(route)
    if counts is None:
        counts = routes[route] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
    counts[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1   # `le`: a value on a bound counts in its bucket
    counts[-1] += seconds


def _add(counts: dict[Any, Any], key: Any, n: float) -> None:
    counts[key] = counts.get(key, 0) + n


class Metrics:
    def __init__(self, router: Router, ledger_ref: Callable[[], LedgerWriter | None], clock: Clock):
        self.registry = CollectorRegistry()
        self.tally = _Tallies()
        self.registry.register(self.tally)
        self.registry.register(_Live(router, ledger_ref, clock))

    def started(self) -> None:
        self.tally.in_flight += 1

    def ended(self) -> None:
        self.tally.in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self.tally.in_flight

    def observe(self, row: dict[str, Any]) -> None:
        tally = self.tally
        route = row.get("route") or ""
        status = row["status"]
        _add(tally.requests, (route, row.get("provider") or "", status), 1)
        code = row.get("error_code")
        if code in _REFUSALS:
            _add(tally.refusals, _REFUSALS[code], 1)
        if status == "rejected":
            return
        if row.get("latency_ms") is not None:
            _observe(tally.latency, route, row["latency_ms"] / 1000)
        if row.get("ttft_ms") is not None:
            _observe(tally.ttft, route, row["ttft_ms"] / 1000)
        if row["prompt_tokens"]:
            _add(tally.tokens, (route, "prompt"), row["prompt_tokens"])
        if row["completion_tokens"]:
            _add(tally.tokens, (route, "completion"), row["completion_tokens"])
        if row["cost_usd"]:
            _add(tally.spend, route, row["cost_usd"])
        if row["attempts"] > 1:
            _add(tally.retries, route, row["attempts"] - 1)

    def watch_limiter(self, limiter: Limiter) -> None:
        self.registry.register(_LimiterLive(limiter))

    def watch_tracing(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_TracingLive(counts))

    def unauthorized(self) -> None:
        _add(self.tally.requests, ("", "", "unauthorized"), 1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
