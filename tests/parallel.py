"""The suite on two pytest-xdist workers (`-n 2 --dist loadfile`, pyproject's addopts): what keeps them apart.

Each worker has its own temp folders (tmp_path), PostgreSQL databases (named by its pid), ports (bound to 0 or
picked free) and, through `worker_redis_url`, its own Redis database: gw0 flushes db 13, gw1 db 14. A whole
file goes to one worker, so a module's fixtures (one gateway process for a fuzz module) start once.

A test that measures time or memory under load it makes itself (a bound in milliseconds, requests per
second, a memory peak) is marked `alone`: it waits for the other worker's test in progress to end, and
the other worker starts no test until it is done, so it measures its own load, as in one process. This is
a readers-writer lock over two files in the run's temp folder (`flock`): every test holds the room
shared, an `alone` test holds it exclusively; a test waiting to be alone holds the gate, which every
test passes on its way in, so a stream of short tests cannot keep it waiting. Without xdist it does nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")     # "gw0", "gw1"; "" in a plain `pytest` run


def worker_redis_url(url: str) -> str:
    """`url` with its database number moved up by the worker's number: gw0 keeps it, gw1 takes the next."""
    index = int(WORKER[2:]) if WORKER.startswith("gw") else 0
    if index == 0:
        return url
    match = re.fullmatch(r"(.*/)(\d+)", url)
    db = (int(match.group(2)) if match else 0) + index
    if db > 15:
        pytest.fail(f"xdist worker {WORKER} would need Redis database {db}; Redis has 16 (0-15): run fewer workers")
    return f"{match.group(1) if match else url.rstrip('/') + '/'}{db}"


@contextlib.contextmanager
def _turn(folder: Path, alone: bool) -> Iterator[None]:
    with open(folder / "tests.gate", "a+") as gate, open(folder / "tests.room", "a+") as room:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Setup, call and teardown of each test inside its turn (a module's fixtures start in its first test's)."""
    basetemp = item.config.option.basetemp
    if not WORKER or not basetemp:
        yield
        return
    with _turn(Path(basetemp).parent, item.get_closest_marker("alone") is not None):   # the run's folder
        yield
