"""Time, injected so limit tests can move it instead of sleeping."""
from __future__ import annotations

import asyncio
import time


class Clock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Every wait of the gateway's own (backoff, the mock's latency) goes through here."""
        await asyncio.sleep(seconds)


class ManualClock(Clock):
    """A clock that only moves when told: for tests and simulations."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic() + self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


class SkippingClock(ManualClock):
    """Real time, except that the gateway's own waits (backoff, Retry-After) pass at once and are
    recorded in `slept`, the clock moving on by as much: tests assert what was waited, not wall time."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    def now(self) -> float:
        return time.time() + self._mono

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
