"""The CLI's database commands start light: `keys list` and `spend` on a ledger of any size are bounded by
Python's start-up and the imports they need (issue 16 measured 0.44 s; 0.28 s without aiohttp; the routes
file's pydantic schema was most of the rest). They load no HTTP stack, and, given `--db`, do not read the
routes file, so neither its schema (pydantic, YAML) nor the dialects are imported.

Nor what only the server or a write uses (LEAN): the limiter's interface and memory limiter (the key registry
counts with windows.py alone), making and changing keys (keys.py; the registry is registry.py), the ledger
writer, shutil (argparse's default formatter imports it, and bz2 and lzma with it, for the terminal's width),
and on PostgreSQL sqlite3; `spend` neither the key registry nor the ledger rebuild;
`--version` not asyncio."""
from __future__ import annotations

import subprocess
import sys

from gateway.cli import main

HEAVY = ("aiohttp", "pydantic", "yaml", "gateway.config", "gateway.dialects", "importlib.resources")
LEAN = ("shutil", "bz2", "lzma", "gateway.clock", "gateway.limiter.base", "gateway.limiter.memory",
        "gateway.store.ledger", "gateway.keys")


def loaded_after(code: str, cwd: str | None = None, watch: tuple[str, ...] = HEAVY) -> list[str]:
    """Which `watch` modules (or their submodules) a fresh interpreter holds after running `code`."""
    probe = (f"import sys\n{code}\n"
             f"print(sorted({{m.split('.')[0] if not m.startswith('gateway') else m for m in sys.modules "
             f"if any(m == h or m.startswith(h + '.') for h in {watch!r})}}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])     # a printed list of names


def test_the_cli_loads_no_http_stack_until_it_serves():
    assert loaded_after("import gateway.cli, gateway.cli.keys, gateway.store.sqlite, gateway.keys") == []


def test_keys_list_and_spend_on_a_named_database_read_no_routes_file(tmp_path):
    (tmp_path / "routes.yaml").write_text("routes: {}\n")     # there, and not needed: --db names the database
    db = str(tmp_path / "g.db")
    made = f"from gateway.cli import main\nassert main(['keys', 'create', '--name', 'a', '--db', {db!r}]) == 0"
    assert "gateway.config" in loaded_after(made, cwd=str(tmp_path))      # its caps come from the routes file
    for argv, exit_code in ((["keys", "list", "--json"], 0), (["keys", "list"], 0), (["keys", "show", "no"], 1),
                            (["spend", "--by", "key"], 0), (["spend", "--by", "day", "--json"], 0)):
        code = f"from gateway.cli import main\nassert main({[*argv, '--db', db]!r}) == {exit_code}"
        assert loaded_after(code, cwd=str(tmp_path)) == [], argv


def test_check_still_reads_the_routes_file(tmp_path):
    (tmp_path / "routes.yaml").write_text("providers:\n  p: {dialect: mock}\nroutes:\n  r:\n"
                                          "    targets: [{provider: p, model: m, price: {input: 1, output: 1}}]\n")
    code = "from gateway.cli import main\nassert main(['check']) == 0"
    assert "gateway.config" in loaded_after(code, cwd=str(tmp_path))


def test_keys_list_and_spend_load_only_what_they_read(tmp_path):
    db = str(tmp_path / "g.db")
    assert main(["keys", "create", "--name", "a", "--db", db]) == 0
    for argv in (["keys", "list", "--json"], ["keys", "show", "no"], ["spend", "--by", "key"]):
        code = f"from gateway.cli import main\nmain({[*argv, '--db', db]!r})"
        assert loaded_after(code, cwd=str(tmp_path), watch=LEAN) == [], argv
    spend = f"from gateway.cli import main\nassert main(['spend', '--by', 'day', '--db', {db!r}]) == 0"
    assert loaded_after(spend, cwd=str(tmp_path), watch=("gateway.registry", "gateway.store.rebuild")) == []
    assert loaded_after("from gateway.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass",
                        cwd=str(tmp_path), watch=("asyncio",)) == []


async def test_on_postgresql_they_load_no_sqlite3(tmp_path, pg_databases):
    url = await pg_databases.url()
    made = f"from gateway.cli import main\nassert main(['keys', 'create', '--name', 'a', '--db', {url!r}]) == 0"
    assert loaded_after(made, cwd=str(tmp_path), watch=("sqlite3",)) == []
    for argv in (["keys", "list", "--json"], ["spend", "--by", "model"]):
        code = f"from gateway.cli import main\nassert main({[*argv, '--db', url]!r}) == 0"
        assert loaded_after(code, cwd=str(tmp_path), watch=(*LEAN, "sqlite3")) == [], argv


def test_the_collector_is_off_while_a_database_command_runs_and_back_after(tmp_path, monkeypatch):
    """keys and spend run with the cyclic garbage collector off (their imports set off some 40 collections);
    called in-process it is on again after, and nothing is frozen; as the program (no argv: sys.argv, as the
    `gateway` script calls it) what is left is frozen, so the interpreter's exit does not walk it all again."""
    import gc

    from gateway.cli import keys

    db = str(tmp_path / "g.db")
    spend, seen = keys.spend, []

    async def watched(args):
        seen.append(gc.isenabled())
        return await spend(args)

    monkeypatch.setattr(keys, "spend", watched)
    assert main(["keys", "create", "--name", "a", "--db", db]) == 0
    assert main(["spend", "--by", "key", "--db", db]) == 0
    assert seen == [False] and gc.isenabled() and gc.get_freeze_count() == 0
    probe = (f"import gc, sys\nfrom gateway.cli import main\nsys.argv = ['gateway', 'keys', 'list', '--db', {db!r}]\n"
             f"assert main() == 0\nprint(gc.isenabled(), gc.get_freeze_count() > 0)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.stdout.split()[-2:] == ["True", "True"], done.stderr
