"""The README, top to bottom, as a new operator runs it (issue 18 items 1 and 4): every shell example
of the quickstart, the endpoints, the command line and the admin API, as written, in a fresh folder
with the default routes.yaml, through bash with the virtualenv's `gateway` on PATH.

Two substitutions only, both stated: the port (8080 may be taken where tests run) and the example
key id `key_7efd5c80251f` (an id this run created). The install step itself (`pip install -e .`) is
what the test suite already ran. Also: every route the app serves is documented.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLE_ID = "key_7efd5c80251f"
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "


def blocks(lang: str, section: str | None = None) -> list[str]:
    text = README
    if section is not None:
        start = text.index(f"\n## {section}\n")
        text = text[start:text.index("\n## ", start + 1)]
    return [textwrap.dedent(b) for b in re.findall(rf"```{lang}\n(.*?)```", text, re.S)]


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    """A fresh folder, a shell with the virtualenv on PATH, and README command (1) serving."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copy(ROOT / "routes.yaml", folder / "routes.yaml")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    def sh(script: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
        script = script.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("--port 8080", f"--port {port}")
        done = subprocess.run(["bash", "-c", f"set -eo pipefail\n{script}"], cwd=folder, capture_output=True,
                              text=True, timeout=60, env={**env, **extra})
        assert not check or done.returncode == 0, (script, done.stdout, done.stderr)
        return done

    (first,) = [line for line in commands(blocks("sh")[0]) if line.startswith(INSTALL)]
    setup, serve = first[len(INSTALL):].rsplit(" && ", 1)
    assert setup == "gateway init && gateway keys create --name demo" and serve == "gateway serve"
    out = sh(setup).stdout
    master = re.search(r"^(gwm-\S+)$", out, re.M).group(1)
    secret = re.search(r"^(sk-\S+)$", out, re.M).group(1)
    demo_id = re.search(r"created key (key_\w+) \(demo\)", out).group(1)
    proc = subprocess.Popen(["bash", "-c", f"{serve} --port {port}"], cwd=folder, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    banner = [proc.stdout.readline().rstrip("\n"), proc.stdout.readline().rstrip("\n")]
    yield {"sh": sh, "folder": folder, "port": port, "master": master, "key": secret, "demo_id": demo_id,
           "banner": banner, "proc": proc, "env": env}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def test_quickstart_prints_what_the_readme_shows(operator):
    (shown,) = [b for b in blocks("text") if b.startswith("gateway: serving")]
    expected = shown.replace("127.0.0.1:8080", f"127.0.0.1:{operator['port']}").splitlines()
    assert operator["banner"] == expected
    assert (operator["folder"] / ".env").read_text() == f"GATEWAY_MASTER_KEY={operator['master']}\n"


def test_the_first_requests_work_as_written(operator):
    curl = next(b for b in blocks("sh") if "/v1/chat/completions" in b)
    answer = json.loads(operator["sh"](curl, KEY=operator["key"]).stdout)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    python = blocks("python")[0]   # the quickstart's; other sections have their own tests
    script = python.replace("127.0.0.1:8080", f"127.0.0.1:{operator['port']}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**operator["env"], "KEY": operator["key"]})
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    for command in commands(next(b for b in blocks("sh", "What clients see") if "/v1/models" in b)):
        out = operator["sh"](command, KEY=operator["key"]).stdout
        assert out.strip() and "error" not in out, (command, out)


def test_every_command_line_example_works(operator):
    (block,) = blocks("sh", "Command line")
    created = None
    for command in commands(block):
        if command.startswith("gateway serve"):
            continue                                   # it serves already, from command (1)
        if created:
            command = command.replace(EXAMPLE_ID, created)
        assert EXAMPLE_ID not in command
        done = operator["sh"](command)
        assert done.stderr == "", (command, done.stderr)
        found = re.search(r"created key (key_\w+) \(team-a\)", done.stdout)
        created = created or (found and found.group(1))
    assert created


def test_every_admin_api_example_works(operator):
    (block,) = blocks("sh", "Admin API")
    load = re.search(r"\(`(set -a; \. \./\.env; set \+a)`\)", README).group(1)
    lines = [c.replace(EXAMPLE_ID, operator["demo_id"]) for c in commands(block)]
    script = "\n".join([load, lines[0], *(f"{c}; echo" for c in lines[1:])])
    outputs = operator["sh"](script).stdout.splitlines()
    answers = [json.loads(line) for line in outputs if line.strip()]
    assert len(answers) == len(lines) - 1
    assert all("error" not in a for a in answers), answers
    created, listed, shown, patched, revoked, spend, routes = answers
    assert created["name"] == "team-b" and created["key"].startswith("sk-")
    assert {k["name"] for k in listed["data"]} >= {"demo", "team-b"}
    assert shown["id"] == operator["demo_id"] and patched["max_budget"] == 50 and revoked["revoked_at"]
    assert spend["object"] == "list" and [r["name"] for r in routes["data"]][:1] == ["demo-chat"]


def test_stopping_says_what_the_readme_shows(operator):
    (shown,) = [b for b in blocks("text") if b.startswith("gateway: stopping")]
    proc = operator["proc"]
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    pattern = re.escape(shown.strip()).replace("2\\ requests", r"\d+\ requests?")
    pattern = pattern.replace("1,204\\ rows", r"[\d,]+\ rows?")
    assert re.fullmatch(pattern, out.strip()), (pattern, out)


def test_every_served_route_is_documented():
    from gateway.app import create_app
    from gateway.appkeys import ServerOptions
    from gateway.config import parse_config

    app = create_app(parse_config("providers: {}\nroutes: {}\n"), ServerOptions(config_path=None, db_path=":memory:"))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    for path in paths:
        documented = re.sub(r"\{\w+\}", "{id}", path).replace("/static/{id}", "/static/")
        assert documented.rstrip("/") in README, path
