"""The memory limiter's sliding window (flat arrays, handles by sequence number) against a plain model:
a list of bookings, each summed while younger than SPAN and not cancelled. Bursts of thousands of bookings
make the window cut its pruned head off (`prune`'s compaction), so handles must survive that."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limiter.windows import SPAN, Window

_STEP = st.one_of(
    st.tuples(st.just("add"), st.floats(0, 30), st.integers(-5, 10**6), st.integers(1, 3000)),
    st.tuples(st.just("cancel"), st.floats(0, 30), st.integers(0, 10**9), st.just(1)),
    st.tuples(st.just("huge"), st.floats(0, 30), st.sampled_from([2**70, -(2**70), 2**62 + 1]), st.just(1)),
)


class _Model:
    def __init__(self) -> None:
        self.bookings: list[list[float]] = []   # [time, amount, cancelled]

    def live(self, now: float) -> list[list[float]]:
        return [b for b in self.bookings if b[0] > now - SPAN]

    def total(self, now: float) -> int:
        return int(sum(b[1] for b in self.live(now) if not b[2]))

    def wait_for_room(self, now: float, need: int, limit: int) -> float:
        excess = self.total(now) + need - limit
        if excess <= 0:
            return 0.0
        for b in self.live(now):
            excess -= 0 if b[2] else b[1]
            if excess <= 0:
                return max(b[0] + SPAN - now, 0.0)
        return SPAN


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, max_size=40), st.integers(0, 10**7))
def test_window_sums_like_the_model(steps, limit):
    window, model, handles, now = Window(), _Model(), [], 1_000.0
    for op, dt, value, count in steps:
        now += dt
        window.prune(now)
        if op == "cancel":
            if handles:
                handle, booking = handles[value % len(handles)]
                window.cancel(handle)
                if booking[0] > now - SPAN:     # a booking that left the window is not taken back twice
                    booking[2] = True
            continue
        for _ in range(count):
            amount = max(min(value, 2**62), -(2**62))
            booking = [now, amount, False]
            model.bookings.append(booking)
            handles.append((window.add(now, value), booking))
        assert window.total == model.total(now)
        assert window.wait_for_room(now, 1, limit) == model.wait_for_room(now, 1, limit)
        live = model.live(now)
        assert window.reset_in(now) == (max(live[0][0] + SPAN - now, 0.0) if live else 0.0)
    window.prune(now)
    assert window.total == model.total(now)
