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
    """Real time, except that a request's own waits (backoff, Retry-After: seconds, never past
    `skips_up_to`) pass at once and are recorded in `slept`, the clock moving on by as much: tests assert
    what was waited, not wall time. Longer sleeps are the periods of background tasks, and really wait."""

    skips_up_to = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    def now(self) -> float:
        return time.time() + self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds > self.skips_up_to:
            await asyncio.sleep(seconds)
            return
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
