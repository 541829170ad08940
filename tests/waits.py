"""The one way tests wait for something that happens on its own (a watcher, a flush, a process)."""
from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(predicate: Callable[[], Any], within: float = 2.0, every: float = 0.02,
                what: str = "not within the time allowed") -> float:
    """Seconds until `predicate()` (plain or async) is true; fails after `within` seconds."""
    began = time.monotonic()
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - began
        assert time.monotonic() - began < within, what
        await asyncio.sleep(every)
