"""PostgreSQL for the tests: the local server, a database of each test's own, and a server to stop.

The store suite and the gateway tests marked `BOTH_DBS` run on SQLite and on PostgreSQL.
Each test gets uniquely named databases (`gwtest_...`), dropped afterwards. Where no server
answers (not on CI's kind of machine, where one runs at the standard port), those tests skip
with a loud reason and a warning in the summary. `TempPostgres` is a server of the test's own
(initdb + pg_ctl in a temp dir, on a free port) that a test may stop and start again without
touching the machine's server.
"""
from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import warnings
from glob import glob
from pathlib import Path
from typing import Any

import asyncpg
import pytest

# The first that answers is used; GATEWAY_TEST_PG (an admin URL) goes first when set.
CANDIDATES = ("postgresql://postgres@127.0.0.1:5432/postgres",
              "postgresql://postgres@/postgres?host=/var/run/postgresql")
NO_SERVER = "NO POSTGRESQL SERVER ANSWERS ({tried}): the PostgreSQL store is NOT tested here"


async def find_server() -> tuple[str | None, str]:
    """(admin URL, '') of the first server that answers, or (None, why not)."""
    tried = []
    for url in ([os.environ["GATEWAY_TEST_PG"]] if os.environ.get("GATEWAY_TEST_PG") else []) + list(CANDIDATES):
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            tried.append(f"{url}: {type(exc).__name__}")
            continue
        await conn.close()
        return url, ""
    return None, NO_SERVER.format(tried="; ".join(tried))


def database_url(admin_url: str, name: str) -> str:
    """The admin URL with another database name (host, port, user and socket kept)."""
    head, _, query = admin_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def to_dollar_params(sql: str) -> str:
    """sqlite3's `?` placeholders as PostgreSQL's `$1, $2, ...` (the tests' SQL has no `?` in strings)."""
    count = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


async def query(url: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return [dict(r) for r in await conn.fetch(to_dollar_params(sql), *params)]
    finally:
        await conn.close()


class PgDatabases:
    """`await dbs.url(name)`: a fresh database per name within one test; all dropped by `drop_all`."""

    def __init__(self, server: tuple[str | None, str]):
        self.admin_url, self.why_not = server
        self.made: dict[str, str] = {}

    async def url(self, name: str = "gateway") -> str:
        if self.admin_url is None:
            pytest.skip(self.why_not)
        if name not in self.made:
            self.made[name] = f"gwtest_{os.getpid()}_{secrets.token_hex(4)}"
            conn = await asyncpg.connect(self.admin_url, timeout=5)
            try:
                await conn.execute(f'CREATE DATABASE "{self.made[name]}"')
            finally:
                await conn.close()
        return database_url(self.admin_url, self.made[name])

    async def drop_all(self) -> None:
        if not self.made:
            return
        conn = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            for db in self.made.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await conn.close()
        self.made.clear()


@pytest.fixture(scope="session")
def pg_server() -> tuple[str | None, str]:
    found = asyncio.run(find_server())
    if found[0] is None:
        warnings.warn(found[1], stacklevel=1)
    return found


@pytest.fixture
async def pg_databases(pg_server):
    dbs = PgDatabases(pg_server)
    yield dbs
    await dbs.drop_all()


class TempPostgres:
    """A PostgreSQL server of the test's own, in a temp dir on a free port; stop() and start() at will.

    initdb refuses root, so as root it runs as the `postgres` user (runuser); it skips loudly when
    the server binaries or that user are missing.
    """

    def __init__(self, port: int):
        bins = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            pytest.skip("NO POSTGRESQL SERVER BINARIES (/usr/lib/postgresql/*/bin): the outage test cannot run")
        self.bin = Path(bins[-1]).parent
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
                pytest.skip("running as root without a 'postgres' user to run initdb as: the outage test cannot run")
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        out = self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
                        "-E", "UTF8", "--locale=C.UTF-8")
        if out.returncode:
            self.cleanup()
            pytest.skip(f"initdb failed, the outage test cannot run: {out.stderr.strip()[-300:]}")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        out = self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"),
                        "-w", "start")
        assert out.returncode == 0, out.stderr + (self.dir / "log").read_text()[-2000:]

    def stop(self) -> None:
        out = self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        assert out.returncode == 0, out.stderr

    def cleanup(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def temp_postgres():
    from tests.procs import free_port

    server = TempPostgres(free_port())
    server.start()
    yield server
    server.cleanup()
