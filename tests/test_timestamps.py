"""The ledger's timestamps (store/base.utc_iso) are the text datetime would write, made faster."""
from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.base import parse_utc_iso, utc_iso


def _by_datetime(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@settings(max_examples=2000, deadline=None)
@given(ts=st.one_of(st.floats(0, 4e9), st.builds(lambda s, f: s + f, st.integers(0, 4 * 10**9),
                                                  st.sampled_from([0.9999995, 0.0000005, 0.9995, 0.9999996, 0.5]))))
def test_utc_iso_writes_what_datetime_writes(ts):
    assert utc_iso(ts) == _by_datetime(ts)
    assert abs(parse_utc_iso(utc_iso(ts)) - ts) < 0.001 + 1e-6 * max(ts, 1) * 1e-3
