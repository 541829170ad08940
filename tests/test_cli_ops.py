"""The operator's first hour on the command line (issue 18): `init` and `.env`, what `serve` says when it
starts, fails and stops, commands that need no provider secret, `--help` and `--version`, key flags
that change nothing or name no route, databases that cannot be opened, and numbers people can read.

The console script runs as a real process where the process boundary is the point (serve, signals,
file permissions); the rest runs `main()` in-process, in a folder of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, main
from tests.conftest import MASTER, check_error
from tests.procs import free_port

SCRIPT = str(Path(sys.executable).with_name("gateway"))
ROUTES = """
settings:
  limits: {default_rpm: 100, default_tpm: 100000, default_budget: 5, max_rpm: 1000, max_tpm: 1000000, max_budget: 50}
providers:
  demo: {dialect: mock}
  slow: {dialect: mock, chunk_delay_ms: 150}
routes:
  demo:
    aliases: [demo-alias]
    targets: [{provider: demo, model: chat, price: {input: 1.0, output: 1.0}}]
  free:
    targets: [{provider: demo, model: chat}]
  slow:
    targets: [{provider: slow, model: chat, price: {input: 1.0, output: 1.0}}]
"""
WITH_SECRET = ROUTES.replace("  demo: {dialect: mock}\n", "  demo: {dialect: mock}\n"
                             "  live: {dialect: openai, base_url: 'https://api.example.com/v1', "
                             "api_key: '${PROVIDER_KEY_FOR_TEST}', headers: {x-org: '${PROVIDER_ORG_FOR_TEST}'}}\n")
HI = [{"role": "user", "content": "hi"}]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An operator's folder: routes.yaml, and the current directory (so `.env` is read from here)."""
    (tmp_path / "routes.yaml").write_text(ROUTES)
    monkeypatch.chdir(tmp_path)
    for name in ("GATEWAY_MASTER_KEY", "GATEWAY_DB", "GATEWAY_CONFIG", "GATEWAY_LIMITS", "PROVIDER_KEY_FOR_TEST"):
        monkeypatch.setenv(name, "")     # so that teardown restores it, whatever `.env` set meanwhile
        monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def cli(folder, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def one_line_error(code: int, out: str, err: str, *says: str) -> None:
    assert code != 0 and out == "", (code, out, err)
    assert err.startswith("gateway: error: ") and err.count("\n") == 1, err
    for part in says:
        assert part in err, (part, err)
    assert "Error" not in err and "Traceback" not in err, err      # no Python class name


# -- item 1: a master key from command (1) ------------------------------------------------------------

def test_init_writes_a_private_master_key_once_and_every_command_reads_it(cli, folder):
    code, out, _ = cli("init")
    master = out.splitlines()[1]
    assert code == 0 and master.startswith("gwm-") and len(master) > 40
    env = folder / ".env"
    assert env.read_text() == f"GATEWAY_MASTER_KEY={master}\n" and env.stat().st_mode & 0o777 == 0o600
    code, out, _ = cli("init")                       # again: nothing changes, the key is not shown again
    assert code == 0 and "already set (in .env)" in out and master not in out
    assert env.read_text() == f"GATEWAY_MASTER_KEY={master}\n"
    os.environ.pop("GATEWAY_MASTER_KEY")
    env.write_text(f"# settings\nexport GATEWAY_DB='{folder / 'other.db'}'\nGATEWAY_MASTER_KEY={master}\n")
    os.environ["GATEWAY_CONFIG"] = str(folder / "routes.yaml")     # the environment wins over the file
    assert cli("keys", "create", "--name", "a")[0] == 0
    assert (folder / "other.db").exists() and not (folder / "gateway.db").exists()
    os.environ.pop("GATEWAY_DB")
    env.write_text("this is not a setting\n")
    one_line_error(*cli("keys", "list"), ".env, line 1")


# -- items 2 and 5: serve says what is true, when it is true --------------------------------------------

def _serve(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([SCRIPT, "serve", *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("case", ["port in use", "missing folder", "not a database", "unknown host",
                                  "not an address here"])
def test_serve_that_cannot_start_never_says_serving(folder, case):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = str(holder.getsockname()[1]) if case == "port in use" else str(free_port())
    args = {"missing folder": ["--db", "nowhere/gateway.db"], "not a database": ["--db", "routes.yaml"],
            "unknown host": ["--host", "no-such-host.invalid"], "not an address here": ["--host", "192.0.2.1"]}
    try:
        proc = _serve(folder, "--port", port, *args.get(case, []))
        out, err = proc.communicate(timeout=30)
    finally:
        holder.close()
    says = {"port in use": f"cannot listen on 127.0.0.1:{port}: the port is in use",
            "missing folder": "the folder", "not a database": "not a database",
            "unknown host": "no such host", "not an address here": "is not an address of this machine"}[case]
    assert proc.returncode == 1 and "serving" not in out, out
    assert err.count("\n") == 1 and err.startswith("gateway: error: ") and says in err, err
    assert "Error" not in err


def _line(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_serve_says_where_and_whether_admin_is_on_then_how_it_stops(folder):
    """The banner comes once the port answers; SIGTERM says it drains, the request in flight finishes,
    and the last line counts the ledger rows written."""
    import http.client

    subprocess.run([SCRIPT, "init"], cwd=folder, check=True, capture_output=True)
    key = json.loads(subprocess.run([SCRIPT, "keys", "create", "--name", "k", "--json"], cwd=folder, check=True,
                                    capture_output=True, text=True).stdout)["key"]
    port = free_port()
    proc = _serve(folder, "--port", str(port))
    try:
        first = _line(proc)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass                                       # listening the moment it says so
        assert first == (f"gateway: serving 3 routes on http://127.0.0.1:{port}/v1 "
                         f"(database gateway.db, limits in memory)")
        assert _line(proc) == (f"gateway: admin API on http://127.0.0.1:{port}/admin, dashboard on "
                               f"http://127.0.0.1:{port}/dashboard (sign in with GATEWAY_MASTER_KEY)")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps({"model": "slow", "messages": HI, "stream": True}),
                      {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        resp = conn.getresponse()                     # 200 headers out; the chunks take ~1.5 s
        assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert _line(proc) == ("gateway: stopping: no new connections; finishing 1 request in flight "
                               "(at most 15 s, then they are cancelled), then writing the ledger")
        body = resp.read().decode()
        assert body.rstrip().endswith("data: [DONE]")   # drained, not cut
        assert _line(proc) == "gateway: stopped: ledger written (1 row this run)"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    con = sqlite3.connect(folder / "gateway.db")
    try:
        assert con.execute("SELECT route, status FROM requests").fetchall() == [("slow", "ok")]
    finally:
        con.close()


def test_serve_without_a_master_key_says_admin_is_off(folder):
    port = free_port()
    proc = _serve(folder, "--port", str(port))
    try:
        assert _line(proc).startswith("gateway: serving 3 routes on ")
        assert _line(proc) == ("gateway: admin API and dashboard off: no GATEWAY_MASTER_KEY "
                               "(`gateway init` writes one to .env)")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "finishing 0 requests in flight" in out


# -- item 3: commands that touch only the database need no provider secret ------------------------------

def test_key_and_spend_commands_need_no_provider_secret(cli, folder):
    (folder / "routes.yaml").write_text(WITH_SECRET)
    code, out, _ = cli("keys", "create", "--name", "a", "--models", "demo", "--json")
    assert code == 0
    key_id = json.loads(out)["id"]
    for argv in (("keys", "list"), ("keys", "show", key_id), ("keys", "update", key_id, "--rpm", "5"),
                 ("spend",), ("spend", "--by", "model"), ("keys", "revoke", key_id)):
        code, out, err = cli(*argv)
        assert code == 0 and err == "", (argv, err)
    code, out, _ = cli("check")                        # check and serve still want it, naming it
    assert code == 1 and "providers.live.api_key: environment variable PROVIDER_KEY_FOR_TEST is not set" in out
    code, out, err = cli("serve", "--port", "1")      # every problem of the file, one a line
    assert code == 1 and out == "" and "PROVIDER_KEY_FOR_TEST" in err and "PROVIDER_ORG_FOR_TEST" in err
    (folder / "routes.yaml").write_text(WITH_SECRET.replace("settings:\n", "settings:\n  db: '${NO_DB_VAR_SET}'\n"))
    one_line_error(*cli("keys", "list"), "settings.db", "NO_DB_VAR_SET")   # the database itself: still needed


# -- item 6: --version and --help -----------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser, path: str = "gateway"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_version_and_a_description_for_every_command_and_flag():
    done = subprocess.run([SCRIPT, "--version"], capture_output=True, text=True, timeout=20)
    from gateway import __version__
    assert done.returncode == 0 and done.stdout == f"gateway {__version__}\n"
    parsers = dict(_parsers(build_parser()))
    assert {"gateway serve", "gateway check", "gateway init", "gateway keys create", "gateway keys list",
            "gateway keys show", "gateway keys update", "gateway keys revoke", "gateway spend"} <= parsers.keys()
    for path, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), path
            else:
                assert action.help, f"{path} {action.option_strings or action.dest}: no help"
    done = subprocess.run([SCRIPT, "serve", "--help"], capture_output=True, text=True, timeout=20)
    for name in ("GATEWAY_MASTER_KEY", "GATEWAY_DB", "GATEWAY_LIMITS", "--workers", ".env"):
        assert name in done.stdout, name


# -- item 7: key flags that change nothing, name no route, or allow no spend ----------------------------

def test_update_without_flags_and_models_that_name_no_route(cli):
    key_id = json.loads(cli("keys", "create", "--name", "a", "--json")[1])["id"]
    one_line_error(*cli("keys", "update", key_id), "nothing to change", "--rpm")
    one_line_error(*cli("keys", "update", key_id, "--models", "demo,nope"), "--models", "'nope'", "demo, free, slow")
    one_line_error(*cli("keys", "create", "--name", "b", "--models", "gpt-4o"), "'gpt-4o'")
    one_line_error(*cli("keys", "create", "--name", "b", "--models", "demo", "--config", "none.yaml"),
                   "no routes file none.yaml")
    assert cli("keys", "update", key_id, "--models", "demo-alias,free")[0] == 0
    assert json.loads(cli("keys", "show", key_id, "--json")[1])["models"] == ["demo", "free"]
    assert [k["name"] for k in json.loads(cli("keys", "list", "--json")[1])] == ["a"]


async def test_admin_api_refuses_models_that_name_no_route(gateway):
    admin = {"Authorization": f"Bearer {MASTER}"}
    async with gateway.http.post(f"{gateway.url}/admin/keys", json={"name": "x", "models": ["gpt", "nope"]},
                                 headers=admin) as resp:
        assert resp.status == 400
        error = check_error(await resp.json(), "invalid_value")
        assert error["param"] == "models" and "'nope'" in error["message"]
    key = await gateway.create_key(models=["gpt-alias"])
    assert key["models"] == ["gpt"]
    async with gateway.http.patch(f"{gateway.url}/admin/keys/{key['id']}", json={"models": ["typo"]},
                                  headers=admin) as resp:
        assert resp.status == 400 and check_error(await resp.json(), "invalid_value")["param"] == "models"
    async with gateway.http.get(f"{gateway.url}/admin/keys/{key['id']}", headers=admin) as resp:
        assert (await resp.json())["models"] == ["gpt"]


async def test_a_zero_budget_means_no_spend_allowed(folder, start_gateway):
    done = subprocess.run([SCRIPT, "keys", "create", "--name", "zero", "--budget", "0"], cwd=folder,
                          capture_output=True, text=True, timeout=30)
    code, out = done.returncode, done.stdout
    assert code == 0 and "budget is $0: no spend is allowed" in out
    secret = out.splitlines()[1]
    gw = await start_gateway(ROUTES)                  # on the same gateway.db
    assert gw.db_path == folder / "gateway.db"
    resp = await gw.post(secret, {"model": "demo", "messages": HI, "max_tokens": 5})
    error = check_error(await resp.json(), "budget_exceeded")
    assert resp.status == 429 and "budget of $0.00" in error["message"]
    assert (await gw.post(secret, {"model": "free", "messages": HI})).status == 200   # a route priced 0 passes


# -- item 8: a database that cannot be opened says why; reports work read-only ---------------------------

@pytest.mark.parametrize("db, says", [("missing/x.db", "the folder"), (".", "is a folder"),
                                      ("routes.yaml", "not a database")])
def test_a_database_that_cannot_be_opened_says_why(cli, db, says):
    for argv in (("keys", "list"), ("keys", "create", "--name", "a"), ("spend",)):
        one_line_error(*cli(*argv, "--db", db), f"database {db}", says)


def _as_a_user(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI as an ordinary user would meet file permissions: root bypasses them, so as root the
    process runs without the capabilities that let it (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"] if AS_ROOT else []
    return subprocess.run([*prefix, SCRIPT, *argv], cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(AS_ROOT and not shutil.which("setpriv"), reason="as root, needs setpriv to drop CAP_DAC_OVERRIDE")
def test_read_only_databases_serve_reports_and_refuse_writes_saying_why(folder):
    ro = folder / "ro"
    ro.mkdir()
    made = subprocess.run([SCRIPT, "keys", "create", "--name", "team", "--json", "--db", "ro/g.db"], cwd=folder,
                          capture_output=True, text=True, check=True)
    key_id = json.loads(made.stdout)["id"]
    (ro / "g.db").chmod(0o444)
    try:
        listed = _as_a_user(["keys", "list", "--json", "--db", "ro/g.db"], folder)
        assert listed.returncode == 0 and [k["id"] for k in json.loads(listed.stdout)] == [key_id], listed.stderr
        for argv in (["keys", "create", "--name", "x"], ["keys", "revoke", key_id],
                     ["serve", "--port", str(free_port())]):
            done = _as_a_user([*argv, "--db", "ro/g.db"], folder)
            assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
            assert "database ro/g.db: is read-only to you (permission denied to write)" in done.stderr
        ro.chmod(0o555)                                 # and the folder: no -wal/-shm can be made
        for argv in (["keys", "show", key_id], ["spend", "--by", "day"]):
            done = _as_a_user([*argv, "--db", "ro/g.db"], folder)
            assert done.returncode == 0 and done.stderr == "", done.stderr
        done = _as_a_user(["keys", "create", "--name", "x", "--db", "ro/new.db"], folder)
        assert done.returncode == 1 and "cannot create it: permission denied in the folder" in done.stderr
        ro.chmod(0o755)
        (ro / "g.db").chmod(0o000)
        done = _as_a_user(["keys", "list", "--db", "ro/g.db"], folder)
        assert done.returncode == 1 and "permission denied: you may not read it" in done.stderr
    finally:
        ro.chmod(0o755)
        (ro / "g.db").chmod(0o600)


# -- item 9: plurals, plain numbers, no class names ------------------------------------------------------

def test_plurals_and_plain_numbers(cli, folder):
    (folder / "one.yaml").write_text("providers:\n  demo: {dialect: mock}\nroutes:\n  r:\n"
                                     "    targets: [{provider: demo, model: chat, price: {input: 1, output: 1}}]\n")
    assert cli("check", "--config", "one.yaml")[1].startswith("ok: 1 provider, 1 route\n")
    assert cli("check")[1].startswith("ok: 2 providers, 3 routes\n")
    one_line_error(*cli("keys", "create", "--name", "a", "--rpm", "1000000"),
                   "--rpm of 1000000 is above the cap of 1000")
    one_line_error(*cli("keys", "create", "--name", "a", "--budget", "1e6"), "of 1000000 is above the cap of 50")
    assert "e+" not in cli("keys", "create", "--name", "a", "--budget", "0.000001")[1]
    out = cli("keys", "list")[1]
    assert "0.000001" in out and "e-" not in out


async def test_connection_failures_name_no_python_class(start_gateway, tmp_path):
    dead = free_port()
    gw = await start_gateway(f"""
providers:
  gone: {{dialect: openai, base_url: "http://127.0.0.1:{dead}/v1", api_key: k}}
  nowhere: {{dialect: openai, base_url: "http://no-such-host.invalid/v1", api_key: k}}
routes:
  gone: {{retries: 0, targets: [{{provider: gone, model: m}}]}}
  nowhere: {{retries: 0, targets: [{{provider: nowhere, model: m}}]}}
""")
    key = (await gw.create_key())["key"]
    for route, says in (("gone", "could not connect to the provider"), ("nowhere", "host name does not resolve")):
        resp = await gw.post(key, {"model": route, "messages": HI})
        error = check_error(await resp.json(), "upstream_error")
        assert resp.status == 502 and says in error["message"], error
        assert "Error" not in error["message"] and "aiohttp" not in error["message"]


def test_access_log_costs_carry_no_float_noise(tmp_path):
    from tests.procs import GatewayProcess

    priced = ("providers:\n  demo: {dialect: mock}\nroutes:\n  demo:\n"
              "    targets: [{provider: demo, model: chat, price: {input: 0.15, output: 0.6}}]\n")
    proc = GatewayProcess(tmp_path, routes=priced, args=("--log-format", "text")).start()
    try:
        for _ in range(3):
            body = {"model": "demo", "messages": [{"role": "user", "content": "a b c d e f g"}]}
            assert proc.post_json(body)[0] == 200
    finally:
        proc.stop()
    lines = [line for line in proc.log.read_text().splitlines() if "gateway.access" in line]
    assert len(lines) == 3
    costs = [line.split("cost_usd=")[1].split()[0] for line in lines]
    assert all(len(c) <= 12 and "e-" not in c for c in costs), costs
