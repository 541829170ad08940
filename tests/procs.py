"""A gateway as a real subprocess (`python -m gateway serve`), for signals, load and fuzzing.

Sync on purpose: hypothesis and signal tests drive it with plain http.client.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MOCK_ROUTES = """
settings:
  limits: {default_rpm: 1000000, default_tpm: 100000000, default_budget: 1000000,
           max_rpm: 1000000, max_tpm: 100000000, max_budget: 1000000}
providers:
  demo: {dialect: mock}
  slow: {dialect: mock, chunk_delay_ms: %(delay)s}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1, output: 1}}]
  slow:
    targets: [{provider: slow, model: chat, price: {input: 1, output: 1}}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, db: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--db", str(db), "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


class GatewayProcess:
    def __init__(self, workdir: Path, routes: str | None = None, delay_ms: float = 20.0, env: dict | None = None,
                 name: str = "gateway", args: tuple[str, ...] = (), db: str | None = None):
        """Several processes may share `workdir` (its routes.yaml and database): give each its own `name`."""
        self.dir = workdir
        self.config = workdir / "routes.yaml"
        self.db = db or workdir / "gateway.db"
        self.log = workdir / f"{name}.log"
        self.args = args
        text = routes if routes is not None else MOCK_ROUTES % {"delay": delay_ms}
        if not self.config.exists() or self.config.read_text() != text:
            self.config.write_text(text)
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.key = ""
        self.last_headers: dict[str, str] = {}

    def create_key(self, *flags: str) -> str:
        out = run_cli("keys", "create", "--name", "proc", "--json", *flags, db=self.db, config=self.config)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["key"]

    def start(self) -> GatewayProcess:
        if not self.key:
            self.key = self.create_key()
        self._logfile = open(self.log, "ab")  # noqa: SIM115 - the server writes to it until stop() closes it
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(self.port),
                                      "--db", str(self.db), "--config", str(self.config), *self.args],
                                     stdout=self._logfile, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.get("/health")[0] == 200:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("gateway did not start")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._logfile.close()
        return code

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            self.last_headers = dict(resp.getheaders())
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        return self._request("GET", path, None, {})

    def post_raw(self, raw: bytes, headers: dict[str, str], with_key: bool = True) -> tuple[int, str]:
        if with_key:
            headers = {"Authorization": f"Bearer {self.key}", **headers}
        return self._request("POST", "/v1/chat/completions", raw, headers)

    def post_json(self, body: Any) -> tuple[int, str]:
        return self.post_raw(json.dumps(body).encode(), {"Content-Type": "application/json"})

    def rows(self, sql: str = "SELECT COUNT(*) FROM requests") -> list[tuple]:
        import sqlite3
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
