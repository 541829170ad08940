"""Shared fixtures: a fake upstream on a real port, a running gateway, keys, clients, schemas."""
from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import openai
import pytest

from gateway.app import create_app
from gateway.appkeys import ServerOptions
from gateway.clock import Clock
from gateway.config import parse_config
from gateway.store import is_postgres_url
from tests.fakes import FIXTURES, FakeUpstream
from tests.parallel import pytest_runtest_protocol, worker_redis_url  # noqa: F401  (the hook: one xdist worker alone)
from tests.pg import pg_databases, pg_server, temp_postgres  # noqa: F401  (fixtures)
from tests.pg import query as pg_query

MASTER = "master-key-for-tests-0123456789"
# Gateway tests that must hold on either store: `@BOTH_DBS` runs them on SQLite and on PostgreSQL.
BOTH_DBS = pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
# the shared-limiter tests use their own Redis db, flushed before and after each test (one per xdist worker)
REDIS_TEST_URL = os.environ.get("GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/13")


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((FIXTURES / "openai" / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


CHUNK_SCHEMA = _validator("CreateChatCompletionStreamResponse")
COMPLETION_SCHEMA = _validator("CreateChatCompletionResponse")
ERROR_SCHEMA = _validator("ErrorResponse")
MODELS_SCHEMA = _validator("ListModelsResponse")


def default_routes(upstream_url: str) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{upstream_url}/v1", api_key: upstream-secret-key-123}}
  claude: {{dialect: anthropic, base_url: "{upstream_url}", api_key: sk-ant-upstream-secret}}
  demo: {{dialect: mock}}
routes:
  gpt:
    aliases: [gpt-alias]
    retries: 2
    timeout: 2
    targets:
      - {{provider: up, model: up-model, price: {{input: 1.0, output: 2.0}}}}
  claude:
    timeout: 2
    targets:
      - {{provider: claude, model: claude-sonnet, price: {{input: 3.0, output: 15.0}}, thinking: native}}
  demo:
    targets:
      - {{provider: demo, model: chat, price: {{input: 1.0, output: 1.0}}}}
  reasoner:
    targets:
      - {{provider: up, model: up-reasoner, thinking: native}}
"""


@dataclass
class Gateway:
    url: str
    db_path: Path
    http: aiohttp.ClientSession
    app: Any

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def create_key(self, **fields: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/admin/keys", json={"name": "test", **fields},
                                  headers={"Authorization": f"Bearer {MASTER}"}) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()

    def sdk(self, key: str, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kwargs)

    async def post(self, key: str | None, body: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return await self.http.post(f"{self.base_url}/chat/completions", data=data,
                                    headers={**headers, **kwargs.pop("headers", {})}, **kwargs)

    async def rows(self, sql: str = "SELECT * FROM requests ORDER BY id", params: tuple = ()) -> list[dict]:
        """Ledger rows as a user would read them with sqlite3 (or psql), after the writer flushed."""
        from gateway.appkeys import LEDGER
        await self.app[LEDGER].flush()
        if is_postgres_url(str(self.db_path)):
            return await pg_query(str(self.db_path), sql, params)
        con = sqlite3.connect(self.db_path)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()


@pytest.fixture
async def upstream(aiohttp_server) -> FakeUpstream:
    fake = FakeUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def db_kind() -> str:
    """The store start_gateway uses; `@BOTH_DBS` parametrizes it with sqlite and postgres."""
    return "sqlite"


@pytest.fixture
async def start_gateway(aiohttp_server, upstream, tmp_path, db_kind, pg_databases):  # noqa: F811 - the fixture imported above
    """Start a gateway on a real port: `await start_gateway(routes_yaml=None, clock=None)`."""
    sessions: list[aiohttp.ClientSession] = []
    servers: list[Any] = []

    async def start(routes_yaml: str | None = None, clock: Clock | None = None,
                    config_path: Path | None = None, db_name: str = "gateway.db", **options: Any) -> Gateway:
        text = routes_yaml if routes_yaml is not None else default_routes(upstream.url)
        if config_path is not None:
            config_path.write_text(text)
        options = {"master_key": MASTER, **options}
        db = tmp_path / db_name if db_kind == "sqlite" else await pg_databases.url(db_name)
        opts = ServerOptions(config_path=str(config_path) if config_path else None, db_path=str(db), **options)
        app = create_app(parse_config(text), opts, clock=clock)
        server = await aiohttp_server(app)
        servers.append(server)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Gateway(str(server.make_url("")).rstrip("/"), db, http, app)

    yield start
    for http in sessions:
        await http.close()
    if db_kind == "postgres":   # stop the apps (their ledgers flush) before the databases are dropped
        for server in servers:
            await server.close()


@pytest.fixture
def redis_url():
    """REDIS_TEST_URL (the next database for the second xdist worker), flushed before and after; skipped
    loudly when no Redis answers there."""
    import redis

    url = worker_redis_url(REDIS_TEST_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"NO REDIS SERVER at {url} ({type(exc).__name__}): the shared-limiter tests "
                    f"did not run; start redis-server or set GATEWAY_TEST_REDIS")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(params=["memory", "redis"])
def limiter_url(request) -> str:
    """Both limiters, for suites that must behave the same on each (memory needs no server)."""
    return "memory" if request.param == "memory" else request.getfixturevalue("redis_url")


@pytest.fixture
async def gateway(start_gateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def key(gateway) -> str:
    return (await gateway.create_key())["key"]


def parse_sse(raw: bytes) -> list[Any]:
    """The `data:` payloads of a gateway stream, JSON-decoded (`[DONE]` kept as a string)."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def check_stream(events: list[Any], model: str, include_usage: bool = False) -> list[dict]:
    """Every SPEC section 5 streaming rule that holds for any complete stream; returns the chunks."""
    assert events and events[-1] == "[DONE]", "a whole stream ends with [DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        errors = [e.message for e in CHUNK_SCHEMA.iter_errors(chunk)]
        assert not errors, (errors, chunk)
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert all(c["model"] == model and c["object"] == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    assert all(len(c["choices"]) == 1 and c["choices"][0]["index"] == 0 for c in with_choices)
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices if c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1, finishes
    usage_chunks = [c for c in chunks if c.get("usage")]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1]["choices"] == []
        u = usage_chunks[0]["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    else:
        assert not usage_chunks
    for c in with_choices:
        assert "<think>" not in (c["choices"][0]["delta"].get("content") or "")
    return chunks


def joined(chunks: list[dict], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c["choices"])


def check_error(body: dict, status_code: str | None = None) -> dict:
    errors = [e.message for e in ERROR_SCHEMA.iter_errors(body)]
    assert not errors, (errors, body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if status_code is not None:
        assert body["error"]["code"] == status_code, body
    return body["error"]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """One real gateway process for a module of hostile-client tests; its log must stay clean."""
    from tests.procs import GatewayProcess

    proc = GatewayProcess(tmp_path_factory.mktemp("fuzz")).start()
    yield proc
    proc.stop()
    log = proc.log.read_text()
    assert "Traceback" not in log and proc.key not in log


KNOWN_SECRETS = ["upstream-secret-key-123", "sk-ant-upstream-secret", "sk-upstream-secret-0123456789", MASTER]


class _LogWatch(logging.Handler):
    """Keeps every log line of the whole suite, formatted as the server would write it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        from gateway.ops.logs import JsonFormatter
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is itself a finding
            self.lines.append(f"UNFORMATTABLE {record.name}")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log():
    """Across the whole suite: no upstream key, master key or client secret reaches a log line."""
    watch = _LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield watch
    root.removeHandler(watch)
    root.setLevel(previous)
    leaks = [line for line in watch.lines for secret in KNOWN_SECRETS if secret in line]
    leaks += [line for line in watch.lines if re.search(r"sk-[A-Za-z0-9_\-]{30,}", line)]
    leaks += [line for line in watch.lines if "Traceback" in line]
    assert not leaks, leaks[:5]


@pytest.fixture(autouse=True)
def log_watch_attached(no_secret_in_any_log):
    """A test that runs `gateway serve` in-process replaces the root handlers (`logs.setup`): the watch
    goes back on before each test, so no later test's lines escape it."""
    root = logging.getLogger()
    if no_secret_in_any_log not in root.handlers:
        root.addHandler(no_secret_in_any_log)
