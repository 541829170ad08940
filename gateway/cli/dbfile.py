"""Opening the database for a command, and saying why it cannot be opened.

SQLite's own words ("unable to open database file") do not say what to fix, so a failure is
explained from the file system: a missing folder, a file that may not be read or written, a
folder where SQLite may not create the database or its -wal and -shm files. Commands that only
read (`keys list`, `keys show`, `spend`) fall back to opening the file read-only.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gateway.cli.common import Fail

if TYPE_CHECKING:
    from gateway.store import DatabaseUnavailable, Store


async def open_database(url: str, read_only: bool = False) -> Store:
    from gateway.store import DatabaseUnavailable, open_store

    try:
        return await open_store(url)
    except DatabaseUnavailable as err:
        problem = failure(url, err, writing=not read_only)
    if read_only and os.path.isfile(url):
        try:
            return await open_store(url, read_only=True)
        except DatabaseUnavailable as err:
            raise failure(url, err, writing=False) from None
    raise problem


def failure(url: str, err: DatabaseUnavailable, writing: bool) -> Fail:
    """The one line for a database that failed a command: why, from the file system when it can tell."""
    from gateway.store import is_postgres_url, redact_url

    if is_postgres_url(url):
        return Fail(err.message)
    explained = explain(url, writing)
    if explained:
        return Fail(explained)
    if err.message.startswith("database "):
        return Fail(err.message)
    return Fail(f"database {redact_url(url)}: {err.reason.split(': ', 1)[-1]}")   # SQLite's words, no class name


def _can(path: str, flags: int) -> bool:
    try:
        os.close(os.open(path, flags))
    except OSError:
        return False
    return True


def explain(path: str, writing: bool) -> str | None:
    """Why the SQLite file `path` cannot be opened (for writing too when `writing`); None if the file
    system shows no reason (then SQLite's own message is the best there is)."""
    folder = os.path.dirname(os.path.abspath(path))
    what = f"database {path}"
    if not os.path.isdir(folder):
        return f"{what}: the folder {folder} does not exist (create it, or pass another --db)"
    if os.path.isdir(path):
        return f"{what}: is a folder, not a database file"
    if not os.path.exists(path):
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{what}: cannot create it: permission denied in the folder {folder} (read-only to you)"
        return None
    if not _can(path, os.O_RDONLY):
        return f"{what}: permission denied: you may not read it"
    if writing and not _can(path, os.O_WRONLY):
        return (f"{what}: is read-only to you (permission denied to write); `keys list`, `keys show` and "
                f"`spend` still work on it")
    if writing and not os.access(folder, os.W_OK | os.X_OK):
        return (f"{what}: the folder {folder} is read-only to you, and SQLite writes its -wal and -shm files "
                f"beside the database; `keys list`, `keys show` and `spend` still work")
    return None
