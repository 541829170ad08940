"""The per-request metrics, kept as plain numbers (gateway/ops/metrics.py), read back as Prometheus would.

For any run of ledger rows: each counter is the sum of what the rows say, each histogram's buckets are
cumulative and count every observation under its `le` bound, and its sum is the sum of the values.
"""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import Clock
from gateway.ops.metrics import Metrics


class _NoTargets:
    def snapshot(self, now: float) -> dict:
        return {}


rows = st.lists(st.fixed_dictionaries({
    "route": st.sampled_from(["a", "b", ""]), "provider": st.sampled_from(["p", ""]),
    "status": st.sampled_from(["ok", "error", "rejected", "cancelled"]),
    "error_code": st.sampled_from([None, "budget_exceeded", "rate_limit_exceeded", "upstream_error"]),
    "latency_ms": st.one_of(st.none(), st.floats(0, 300_000), st.sampled_from([5.0, 50.0, 1000.0, 10_000.0])),
    "ttft_ms": st.one_of(st.none(), st.floats(0, 300_000)),
    "prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6),
    "cost_usd": st.floats(0, 100), "attempts": st.integers(0, 4)}), max_size=30)


@settings(max_examples=60, deadline=None)
@given(rows=rows)
def test_the_scraped_metrics_are_what_the_rows_add_up_to(rows):
    metrics = Metrics(_NoTargets(), lambda: None, Clock())
    for row in rows:
        metrics.observe(row)
    samples: dict[tuple, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def got(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    for route in ("a", "b", ""):
        mine = [r for r in rows if r["route"] == route]
        served = [r for r in mine if r["status"] != "rejected"]
        for provider in ("p", ""):
            for status in ("ok", "error", "rejected", "cancelled"):
                assert got("gateway_requests_total", route=route, provider=provider, status=status) == \
                    sum(1 for r in mine if r["provider"] == provider and r["status"] == status)
        assert got("gateway_tokens_total", route=route, kind="prompt") == sum(r["prompt_tokens"] for r in served)
        assert math.isclose(got("gateway_spend_usd_total", route=route), sum(r["cost_usd"] for r in served),
                            rel_tol=1e-9, abs_tol=1e-9)
        assert got("gateway_retries_total", route=route) == sum(max(r["attempts"] - 1, 0) for r in served)
        seconds = [r["latency_ms"] / 1000 for r in served if r["latency_ms"] is not None]
        if not seconds:
            continue
        previous = 0.0
        for le in ("0.005", "0.05", "1.0", "10.0", "120.0", "+Inf"):
            count = got("gateway_request_duration_seconds_bucket", route=route, le=le)
            assert count == sum(1 for v in seconds if le == "+Inf" or v <= float(le))
            assert count >= previous
            previous = count
        assert got("gateway_request_duration_seconds_count", route=route) == len(seconds)
        assert math.isclose(got("gateway_request_duration_seconds_sum", route=route), sum(seconds), rel_tol=1e-9,
                            abs_tol=1e-9)
    assert got("gateway_limit_refusals_total", reason="budget") == \
        sum(1 for r in rows if r["error_code"] == "budget_exceeded")
