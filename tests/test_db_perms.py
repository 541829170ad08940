"""The SQLite database, its WAL and its shared-memory file are readable by their owner only (SPEC section 9)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

import aiohttp

from tests.conftest import MASTER
from tests.procs import GatewayProcess, run_cli


@contextlib.contextmanager
def umask(mask: int):
    """The usual umask (022 makes new files 0644), whatever the test runner's is; children inherit it."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


async def test_a_serving_gateway_creates_db_wal_and_shm_0600(tmp_path):
    gw = GatewayProcess(tmp_path, env={"GATEWAY_MASTER_KEY": MASTER})
    gw.key = "not-yet"                                   # no CLI: the server itself creates the database
    with umask(0o022):
        gw.start()
    try:
        base = f"http://127.0.0.1:{gw.port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/admin/keys", json={"name": "perms"},
                                 headers={"Authorization": f"Bearer {MASTER}"}) as resp:
                assert resp.status == 201
                key = (await resp.json())["key"]
            async with http.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                 json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}) as resp:
                assert resp.status == 200
        for _ in range(100):
            if gw.rows()[0][0] == 1:
                break
            await asyncio.sleep(0.05)
        assert gw.rows()[0][0] == 1
        files = [gw.db, Path(f"{gw.db}-wal"), Path(f"{gw.db}-shm")]
        assert {f.name: mode(f) for f in files} == {f.name: "0o600" for f in files}
    finally:
        assert gw.stop() == 0


def test_the_cli_creates_the_database_0600(tmp_path):
    config = tmp_path / "routes.yaml"
    config.write_text("providers: {demo: {dialect: mock}}\nroutes: {demo: {targets: [{provider: demo, model: m}]}}\n")
    db = tmp_path / "cli.db"
    with umask(0o022):
        done = run_cli("keys", "create", "--name", "perms", db=db, config=config)
    assert done.returncode == 0, done.stderr
    assert mode(db) == "0o600"
    assert all(mode(f) == "0o600" for f in tmp_path.glob("cli.db-*"))


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path):
    config = tmp_path / "routes.yaml"
    config.write_text("providers: {demo: {dialect: mock}}\nroutes: {demo: {targets: [{provider: demo, model: m}]}}\n")
    db = tmp_path / "shared.db"
    db.touch(mode=0o640)
    db.chmod(0o640)
    assert run_cli("keys", "create", "--name", "perms", db=db, config=config).returncode == 0
    assert mode(db) == "0o640"
