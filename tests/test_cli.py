"""The command line (SPEC section 2): key commands, their errors, and their reach into a running server.

Error cases run `main()` in-process (fast; an uncaught exception fails the test like a traceback
would); the console script itself runs as a real subprocess where the process boundary is the point.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.clock import ManualClock
from tests.conftest import MASTER, check_error
from tests.waits import until

CAPS = """
settings:
  limits: {default_rpm: 7, default_tpm: 700, default_budget: 7, max_rpm: 50, max_tpm: 5000, max_budget: 20}
providers:
  demo: {dialect: mock}
routes:
  demo:
    aliases: [demo-alias]
    targets: [{provider: demo, model: chat, price: {input: 1.0, output: 1.0}}]
"""
KEY_FIELDS = {"id", "name", "key_prefix", "rpm_limit", "tpm_limit", "max_budget", "budget_period", "models",
              "created_at", "revoked_at", "rpm_used", "tpm_used", "spend_period", "spend_total"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def cli(capsys, tmp_path):
    """`cli(*argv)` -> (exit code, stdout, stderr), against tmp_path's gateway.db and a routes file with caps."""
    config = tmp_path / "routes.yaml"
    config.write_text(CAPS)

    def run(*argv: str) -> tuple[int, str, str]:
        extra = ["--db", str(tmp_path / "gateway.db")] if "--db" not in argv else []
        if argv[0] == "keys" and "--config" not in argv:
            extra += ["--config", str(config)]
        try:
            code = main([*argv, *extra])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create_list_show_as_json(cli):
    code, out, _ = cli("keys", "create", "--name", "team", "--rpm", "9", "--period", "daily", "--models",
                       "demo,demo-alias", "--json")
    created = json.loads(out)
    assert code == 0 and set(created) == {"id", "key"} and created["key"].startswith("sk-")
    code, out, _ = cli("keys", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and isinstance(listed, list) and len(listed) == 1
    key = listed[0]
    assert set(key) == KEY_FIELDS
    assert (key["id"], key["name"], key["rpm_limit"], key["tpm_limit"], key["max_budget"]) == \
        (created["id"], "team", 9, 700, 7)                        # unset limits: settings.limits defaults
    assert key["budget_period"] == "daily" and key["models"] == ["demo"] and key["rpm_used"] == 0   # alias: its route
    assert created["key"].startswith(key["key_prefix"])
    code, out, _ = cli("keys", "show", created["id"], "--json")
    assert code == 0 and json.loads(out) == key
    for args in (("keys", "list"), ("keys", "show", created["id"])):
        code, out, _ = cli(*args)
        assert code == 0 and created["id"] in out and created["key"] not in out


def test_update_and_revoke_change_the_row(cli, tmp_path):
    key_id = json.loads(cli("keys", "create", "--name", "a", "--json")[1])["id"]
    assert cli("keys", "update", key_id, "--rpm", "50", "--tpm", "5000", "--budget", "20", "--period", "monthly",
               "--models", "")[0] == 0
    shown = json.loads(cli("keys", "show", key_id, "--json")[1])
    assert (shown["rpm_limit"], shown["tpm_limit"], shown["max_budget"], shown["budget_period"], shown["models"]) == \
        (50, 5000, 20, "monthly", None)
    code, out, _ = cli("keys", "revoke", key_id)
    assert code == 0 and key_id in out
    assert json.loads(cli("keys", "show", key_id, "--json")[1])["revoked_at"] is not None


@pytest.mark.parametrize("argv, says", [
    (("keys", "create", "--name", "a", "--rpm", "51"), "--rpm"),
    (("keys", "create", "--name", "a", "--tpm", "5001"), "--tpm"),
    (("keys", "create", "--name", "a", "--budget", "20.5"), "--budget"),
    (("keys", "update", "KEY", "--rpm", "1000"), "50"),
    (("keys", "create", "--name", "a", "--rpm", "abc"), "--rpm"),
    (("keys", "create", "--name", "a", "--rpm", "0"), "--rpm"),
    (("keys", "create", "--name", "a", "--budget", "nan"), "--budget"),
    (("keys", "create", "--name", "a", "--budget", "-1"), "--budget"),
    (("keys", "create", "--name", "a", "--period", "weekly"), "--period"),
    (("keys", "create", "--name", " "), "--name"),
    (("keys", "create"), "--name"),
    (("keys", "frob"), "frob"),
    (("keys", "show"), "id"),
    (("keys", "show", "key_nope"), "key_nope"),
    (("keys", "update", "key_nope", "--rpm", "5"), "key_nope"),
    (("keys", "revoke", "key_nope"), "key_nope"),
    (("keys", "list", "--bogus"), "--bogus"),
    (("spend", "--by", "user"), "--by"),
    (("spend", "--since", "2024-13-01"), "--since"),
    (("spend", "--since", "last week"), "--since"),
])
def test_bad_flags_and_values_are_one_line_errors(cli, argv, says):
    key_id = json.loads(cli("keys", "create", "--name", "a", "--json")[1])["id"]
    code, out, err = cli(*(key_id if a == "KEY" else a for a in argv))
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("gateway: error:") and says in err, err
    shown = json.loads(cli("keys", "list", "--json")[1])
    assert [(k["name"], k["rpm_limit"], k["revoked_at"]) for k in shown] == [("a", 7, None)]   # nothing changed


@pytest.mark.parametrize("db", ["missing-dir/x.db", "routes.yaml"])
def test_a_bad_database_path_is_a_one_line_error(cli, tmp_path, db):
    for argv in (("keys", "list"), ("keys", "create", "--name", "a"), ("spend",)):
        code, out, err = cli(*argv, "--db", str(tmp_path / db))
        assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("gateway: error: database")


def test_console_script_errors_have_no_traceback(tmp_path):
    import subprocess
    script = Path(sys.executable).with_name("gateway")
    for argv in (["keys", "create", "--name", "a", "--rpm", "lots"],
                 ["keys", "list", "--db", str(tmp_path / "no/x.db")],
                 ["spend", "--db", str(tmp_path)]):
        done = subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=20, cwd=tmp_path)
        assert done.returncode != 0 and done.stdout == ""
        assert done.stderr.startswith("gateway: error:") and done.stderr.count("\n") == 1, done.stderr


async def gateway_cli(*argv: str) -> str:
    """Run the real console entry point (`python -m gateway`) as another process."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_cli_changes_reach_a_running_server_within_2s(start_gateway, tmp_path):
    clock = ManualClock()
    gw = await start_gateway(CAPS, clock=clock)
    key = await gw.create_key()
    clock.advance(3 * 86400)       # the server's clock runs days ahead of the CLI's wall clock: skew must not matter
    flags = ["--db", str(gw.db_path), "--config", str(tmp_path / "none.yaml")]
    admin = {"Authorization": f"Bearer {MASTER}"}
    async with gw.http.patch(f"{gw.url}/admin/keys/{key['id']}", json={"tpm": 900}, headers=admin) as resp:
        assert resp.status == 200      # a write stamped with the server's (future) time

    async def limit_is(n: int) -> bool:
        async with gw.http.get(f"{gw.url}/admin/keys/{key['id']}", headers=admin) as resp:
            return (await resp.json())["rpm_limit"] == n

    await gateway_cli("keys", "update", key["id"], "--rpm", "1", *flags)
    assert await until(lambda: limit_is(1)) < 2.0
    assert (await gw.post(key["key"], {"model": "demo", "messages": HI})).status == 200
    assert (await gw.post(key["key"], {"model": "demo", "messages": HI})).status == 429

    created = json.loads(await gateway_cli("keys", "create", "--name", "cli", "--json", *flags))

    async def usable() -> bool:
        return (await gw.post(created["key"], {"model": "demo", "messages": HI})).status == 200

    assert await until(usable) < 2.0

    await gateway_cli("keys", "revoke", key["id"], *flags)

    async def revoked() -> bool:
        resp = await gw.post(key["key"], {"model": "demo", "messages": HI})
        return resp.status == 401 and check_error(await resp.json(), "key_revoked")

    assert await until(revoked) < 2.0


async def test_a_change_right_after_start_and_plain_sql_edits_are_seen(start_gateway):
    gw = await start_gateway(CAPS)
    key, unused = await gw.create_key(), await gw.create_key()
    con = sqlite3.connect(gw.db_path)       # an operator editing the table by hand, in the same millisecond
    with con:
        con.execute("UPDATE api_keys SET rpm_limit = 1 WHERE id = ?", (key["id"],))
        con.execute("DELETE FROM api_keys WHERE id = ?", (unused["id"],))
    con.close()

    async def limited() -> bool:
        resp = await gw.post(key["key"], {"model": "demo", "messages": HI})
        return resp.status == 429 and resp.headers["x-ratelimit-limit-requests"] == "1"

    assert await until(limited) < 2.0
    resp = await gw.post(unused["key"], {"model": "demo", "messages": HI})
    assert resp.status == 401 and check_error(await resp.json(), "invalid_api_key")


def test_a_cli_created_secret_is_stored_only_as_its_hash(cli, tmp_path):
    created = json.loads(cli("keys", "create", "--name", "a", "--json")[1])
    cli("keys", "update", created["id"], "--rpm", "9")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    secret = created["key"]
    assert secret.encode() not in raw and secret[12:].encode() not in raw
    con = sqlite3.connect(tmp_path / "gateway.db")
    try:
        (stored,) = con.execute("SELECT key_hash FROM api_keys WHERE id = ?", (created["id"],)).fetchone()
    finally:
        con.close()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
