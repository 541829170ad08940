"""Hostile client input that once reached a 500: each is now a 4xx in the envelope, or an answer.

Undecodable `Authorization` bytes on every authenticated endpoint, request bodies
whose `Content-Encoding` lies, and messages whose nested JSON types are wrong (on
every route kind: OpenAI, Anthropic and mock dialects). A hypothesis strategy builds
bodies that are well formed but carry a wrong JSON type at some nesting level; they
go to every dialect's `build_request` after `protocol.validate`, and over real HTTP
to a gateway process in front of a fake OpenAI and a fake Anthropic upstream.
"""
from __future__ import annotations

import asyncio
import copy
import gzip
import json
import socket
import threading
import zlib
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.dialects import anthropic, mock, openai
from gateway.dialects.base import TargetView
from gateway.errors import InvalidRequest
from gateway.front import chat_params as protocol
from gateway.tokens import estimate_prompt
from tests.conftest import MASTER, check_error, default_routes
from tests.fakes import FakeUpstream

CHAT = b'{"model":"demo","messages":[{"role":"user","content":"hi"}]}'


async def raw_http(url: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes we wrote ourselves (no client library re-encodes a header); the status and the body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request_bytes(method: str, path: str, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: gateway", b"Connection: close",
             f"Content-Length: {len(body)}".encode(), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# ---------------------------------------------------------------- Authorization bytes that are not UTF-8

ENDPOINTS = [("POST", "/v1/chat/completions", CHAT), ("GET", "/v1/models", b""),
             ("GET", "/admin/keys", b""), ("POST", "/admin/keys", b'{"name":"x"}'), ("GET", "/admin/keys/key_1", b""),
             ("PATCH", "/admin/keys/key_1", b'{"rpm":5}'), ("DELETE", "/admin/keys/key_1", b""),
             ("GET", "/admin/spend", b""), ("GET", "/admin/routes", b"")]
BAD_AUTH = [b"Bearer \xff", b"Bearer sk-\xc3\x28\xa0\xa1", b"bearer \x80" + MASTER.encode(), b"\xff\xfe",
            b"Bearer " + MASTER.encode() + b"\xed\xa0\x80"]


async def test_undecodable_authorization_is_401_on_every_endpoint(gateway, key):
    wrong = []
    for method, path, body in ENDPOINTS:
        for auth in BAD_AUTH:
            status, text = await raw_http(gateway.url, request_bytes(method, path, [b"Authorization: " + auth], body))
            if status != 401:
                wrong.append((method, path, auth, status, text[:200]))
                continue
            err = check_error(json.loads(text))
            if (err["type"], err["code"]) != ("authentication_error", "invalid_api_key"):
                wrong.append((method, path, auth, err))
    assert not wrong, "\n".join(map(str, wrong))
    master = [f"Authorization: Bearer {MASTER}".encode()]
    status, _ = await raw_http(gateway.url, request_bytes("GET", "/admin/keys", master))
    assert status == 200, "the master key itself still opens the admin API"


# ---------------------------------------------------------------- Content-Encoding

def _post(key: str, body: bytes, encoding: str | None) -> bytes:
    headers = [f"Authorization: Bearer {key}".encode(), b"Content-Type: application/json"]
    if encoding is not None:
        headers.append(f"Content-Encoding: {encoding}".encode())
    return request_bytes("POST", "/v1/chat/completions", headers, body)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP", "Deflate"])
async def test_a_body_that_is_not_what_its_content_encoding_says_is_400(gateway, key, encoding):
    status, text = await raw_http(gateway.url, _post(key, CHAT, encoding))
    assert status == 400, text
    err = check_error(json.loads(text), "invalid_json")
    assert "Content-Encoding" in err["message"]
    packed = gzip.compress(CHAT)
    status, text = await raw_http(gateway.url, _post(key, packed[:len(packed) // 2], "gzip"))   # cut short
    assert status == 400, text
    check_error(json.loads(text), "invalid_json")


@pytest.mark.parametrize("encoding", ["x-gzip", "gzip, deflate", "compress"])
async def test_a_coding_the_gateway_does_not_decode_is_named_when_the_body_is_not_json(gateway, key, encoding):
    status, text = await raw_http(gateway.url, _post(key, gzip.compress(CHAT), encoding))
    assert status == 400, text
    assert encoding in check_error(json.loads(text), "invalid_json")["message"]


@pytest.mark.parametrize("encoding,pack", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                           ("deflate", lambda b: zlib.compress(b)[2:-4])])   # raw deflate too
async def test_a_compressed_body_is_read(gateway, key, encoding, pack):
    status, text = await raw_http(gateway.url, _post(key, pack(CHAT), encoding))
    assert status == 200, text
    assert json.loads(text)["object"] == "chat.completion"


@pytest.mark.parametrize("encoding", ["identity", "br", "zstd", "compress", "nonsense", "\u00e9"])
async def test_other_content_encodings_never_500(gateway, key, encoding):
    """A coding aiohttp does not know leaves the body as sent; br and zstd without their libraries are a 400
    from aiohttp's parser itself, before any handler (plain text, like other framing errors)."""
    status, text = await raw_http(gateway.url, _post(key, CHAT, encoding))
    assert status < 500, text
    if status != 200 and text.startswith(b"{"):
        check_error(json.loads(text))


async def test_a_gzip_bomb_is_413_on_its_decompressed_size(start_gateway, upstream):
    gw = await start_gateway(routes_yaml="settings: {max_body_bytes: 4096}\n" + default_routes(upstream.url))
    key = (await gw.create_key())["key"]
    big = b'{"model":"demo","messages":[{"role":"user","content":"' + b"a" * 50_000_000 + b'"}]}'
    bomb = gzip.compress(big, 9)
    assert len(bomb) < 100_000
    status, text = await raw_http(gw.url, _post(key, bomb, "gzip"))
    assert status == 413, text
    check_error(json.loads(text), "request_too_large")
    small = gzip.compress(b'{"model":"demo","messages":[{"role":"user","content":"' + b"a" * 3000 + b'"}]}')
    status, text = await raw_http(gw.url, _post(key, small, "gzip"))
    assert status == 200, text


# ---------------------------------------------------------------- nested shapes, on every route kind

USER = {"role": "user", "content": "hi"}


def _call(**over: Any) -> dict:
    return {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}, **over}


def _with(*messages: dict) -> list[dict]:
    return [USER, *messages]


SHAPES: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": _with({"role": "assistant", "tool_calls": 5})}, "messages[1].tool_calls", "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": {"id": "c1"}})}, "messages[1].tool_calls",
     "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": [{"function": "abc"}]})},
     "messages[1].tool_calls[0].function", "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": ["call_1"]})}, "messages[1].tool_calls[0]",
     "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(id=5)]})}, "messages[1].tool_calls[0].id",
     "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(id=None)]})}, "messages[1].tool_calls[0].id",
     "missing_required_parameter"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(type=None)]})},
     "messages[1].tool_calls[0].type", "missing_required_parameter"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(function=None)]})},
     "messages[1].tool_calls[0].function", "missing_required_parameter"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(function={"arguments": "{}"})]})},
     "messages[1].tool_calls[0].function.name", "missing_required_parameter"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(function={"name": "f", "arguments": {"a": 1}})]})},
     "messages[1].tool_calls[0].function.arguments", "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call(function={"name": "f"})]})},
     "messages[1].tool_calls[0].function.arguments", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": ["hi", 1]}]}, "messages[0].content[0]", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, 1]}]}, "messages[0].content[1]",
     "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"text": "a"}]}]}, "messages[0].content[0].type",
     "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": [{"type": 3, "text": "a"}]}]}, "messages[0].content[0].type",
     "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ["a"]}]}]}, "messages[0].content[0].text",
     "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text",
     "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages[0].content[0].image_url.url", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}]},
     "messages[0].content[0].image_url", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url.url", "missing_required_parameter"),
    ({"messages": [{"role": "system", "content": [{"type": "text", "text": 5}]}, USER]},
     "messages[0].content[0].text", "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call()]},
                        {"role": "tool", "tool_call_id": "c1", "content": ["42"]})}, "messages[2].content[0]",
     "invalid_type"),
    ({"messages": _with({"role": "assistant", "tool_calls": [_call()]},
                        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": None}]})},
     "messages[2].content[0].text", "missing_required_parameter"),
    ({"messages": _with({"role": "tool", "content": "42"})}, "messages[1].tool_call_id",
     "missing_required_parameter"),
    ({"messages": _with({"role": "tool", "tool_call_id": 1, "content": "42"})}, "messages[1].tool_call_id",
     "invalid_type"),
    ({"messages": _with({"role": "assistant", "content": "a", "reasoning_content": ["x"],
                         "reasoning_signature": "s"})}, "messages[1].reasoning_content", "invalid_type"),
    ({"messages": [{"role": "user", "content": "hi", "name": 7}]}, "messages[0].name", "invalid_type"),
    ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type", "missing_required_parameter"),
    ({"tools": [{"type": "function", "function": "f"}]}, "tools[0].function", "invalid_type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
     "tools[0].function.parameters", "invalid_type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]},
     "tools[0].function.description", "invalid_type"),
    ({"tools": [{"type": "custom", "custom": {}}]}, "tools[0].custom.name", "missing_required_parameter"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2 ** 64 - 1}}, "thinking.budget_tokens", "invalid_value"),
    ({"max_tokens": 2 ** 40}, "max_tokens", "invalid_value"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls", "invalid_type"),
    ({"user": {"id": 1}}, "user", "invalid_type"),
]


@pytest.mark.parametrize("model", ["gpt", "claude", "demo"])
async def test_wrong_nested_types_are_400_on_every_route_kind(gateway, upstream, model):
    key = (await gateway.create_key(rpm=1000, tpm=100_000))["key"]
    wrong = []
    for fields, param, code in SHAPES:
        sent = {"model": model, "messages": [USER], **copy.deepcopy(fields)}
        resp = await gateway.post(key, sent)
        text = await resp.text()
        if resp.status != 400:
            wrong.append((fields, resp.status, text[:200]))
            continue
        err = check_error(json.loads(text))
        got = (err["type"], err["param"], err["code"])
        if got != ("invalid_request_error", param, code) or param not in err["message"]:
            wrong.append((fields, got, err["message"]))
    assert not wrong, "\n".join(map(str, wrong))
    assert upstream.requests == [], "a rejected request never reaches the upstream"


ACCEPTED = [
    [{"role": "system", "content": [{"type": "text", "text": "be brief"}]}, {"role": "developer", "content": "x"},
     {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                  {"type": "image_url",
                                   "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}},
                                  {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
     {"role": "assistant", "content": None,
      "tool_calls": [_call(), _call(id="c2", function={"name": "g", "arguments": ""})]},
     {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]},
     {"role": "tool", "tool_call_id": "c2", "content": "43"},
     {"role": "assistant", "content": [{"type": "text", "text": "a"}], "refusal": None, "name": "bot"},
     {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}], "name": "me"}],
    [{"role": "user", "content": None}, {"role": "assistant", "content": "",
                                         "tool_calls": [{"id": "w", "type": "builtin_function",
                                                         "function": {"name": "$web_search"}}]},
     {"role": "tool", "tool_call_id": "w", "content": "done"}, {"role": "user", "content": "and?"}],
]
ACCEPTED_TOOLS = [{"type": "custom", "custom": {"name": "grammar"}},
                  {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"},
                                                     "strict": True}},
                  {"type": "builtin_function", "function": {"name": "$web_search"}}]


@pytest.mark.parametrize("model", ["gpt", "claude", "demo"])
async def test_every_well_shaped_message_kind_is_accepted_on_every_route_kind(gateway, upstream, model):
    key = (await gateway.create_key(rpm=1000, tpm=100_000))["key"]
    for messages in ACCEPTED:
        for extra in ({}, {"tools": ACCEPTED_TOOLS, "tool_choice": "required"}):
            resp = await gateway.post(key, {"model": model, "messages": messages, **extra})
            assert resp.status == 200, (messages, extra, await resp.text())


# ---------------------------------------------------------------- hostile shapes, fuzzed
#
# A body is drawn well formed (every message role, part, tool call and tool kind the
# gateway knows, and some it passes through), then 0 to 2 of its positions, at any
# depth, get a value of another JSON type or lose their key.

junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-2 ** 70, 2 ** 70),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6), st.just([]), st.just({}),
                 st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
words = st.text(max_size=12)
arguments = st.one_of(st.sampled_from(["", "{}", '{"a": [1, "x"]}', "{broken", "[1]", "null"]), words)
urls = st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBO", "data:;base64,", "data:x", ""])
count = st.integers(1, 2 ** 31 - 1)   # OpenAI's bound on integer parameters


def obj(required: dict, **optional: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(required, optional=optional)


text_part = obj({"type": st.just("text"), "text": words}, cache_control=st.just({"type": "ephemeral"}))
part = st.one_of(
    text_part,
    obj({"type": st.just("image_url"), "image_url": obj({"url": urls}, detail=st.sampled_from(["low", "auto"]))}),
    obj({"type": st.just("refusal"), "refusal": words}),
    obj({"type": st.just("input_audio"), "input_audio": obj({"data": words, "format": st.just("wav")})}),
    obj({"type": st.just("file"), "file": obj({}, file_id=words)}),
    obj({"type": st.sampled_from(["document", "image", "thinking", "x"])}, source=junk, text=junk),
)
tool_call = st.one_of(
    obj({"id": words, "type": st.just("function"), "function": obj({"name": words, "arguments": arguments})}),
    obj({"id": words, "type": st.just("custom"), "custom": obj({"name": words, "input": words})}),
    obj({"id": words, "type": st.just("builtin_function")}, function=obj({}, name=words)),
)
message = st.one_of(
    obj({"role": st.sampled_from(["system", "developer"]),
         "content": st.one_of(words, st.lists(text_part, max_size=2))}),
    obj({"role": st.just("user"), "content": st.one_of(words, st.none(), st.lists(part, max_size=3))}, name=words),
    obj({"role": st.just("assistant"), "content": st.one_of(words, st.none(), st.lists(part, max_size=2))},
        tool_calls=st.lists(tool_call, max_size=2), refusal=words, reasoning_content=words,
        reasoning_signature=words, name=words),
    obj({"role": st.just("tool"), "tool_call_id": words, "content": st.one_of(words, st.lists(part, max_size=2))}),
    obj({"role": st.sampled_from(["function", "ipython"]), "content": words}, name=words),
)
tool = st.one_of(
    obj({"type": st.just("function"), "function": obj(
        {"name": words}, description=words, strict=st.booleans(),
        parameters=st.just({"type": "object", "properties": {"a": {"type": "string"}}}))}),
    obj({"type": st.just("custom"), "custom": obj({"name": words}, description=words)}),
    obj({"type": st.sampled_from(["web_search", "builtin_function"])}, function=obj({}, name=words)),
)
OPTIONAL = {
    "tools": st.lists(tool, max_size=3),
    "tool_choice": st.one_of(st.sampled_from(["none", "auto", "required"]),
                             obj({"type": st.just("function"), "function": obj({"name": words})})),
    "parallel_tool_calls": st.booleans(),
    "stop": st.one_of(words, st.lists(words, max_size=4)),
    "thinking": st.one_of(obj({"type": st.just("enabled")}, budget_tokens=count), st.just({"type": "disabled"})),
    "max_tokens": count,
    "max_completion_tokens": count,
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "response_format": obj({"type": st.sampled_from(["text", "json_object"])}),
    "user": words,
    "n": st.just(1),
    "metadata": st.dictionaries(st.text(max_size=4), words, max_size=2),
}


def _positions(value: Any, path: tuple = ()) -> list[tuple]:
    """Every (path) of a value inside the body, at any depth."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _positions(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _positions(v, (*path, i))
    return out


@st.composite
def bodies(draw, models: st.SearchStrategy) -> dict[str, Any]:
    body = copy.deepcopy(draw(obj({"model": models, "messages": st.lists(message, min_size=1, max_size=4),
                                   "stream": st.booleans()}, **OPTIONAL)))   # `st.just` values are shared
    if body["stream"] and draw(st.booleans()):
        body["stream_options"] = {"include_usage": draw(st.booleans())}
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        positions = [p for p in _positions(body) if p[0] != "model"]
        inner = [p for p in positions if len(p) >= 3]   # inside a message or a tool: what dialects walk
        if inner and draw(st.booleans()):
            positions = inner
        depth = draw(st.sampled_from(sorted({len(p) for p in positions})))   # each depth as likely as the top
        path = draw(st.sampled_from([p for p in positions if len(p) == depth]))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]            # a field left out
        else:
            parent[path[-1]] = copy.deepcopy(draw(junk))   # a field of another JSON type
    return body


VIEW = TargetView(model="up-model", base_url="http://127.0.0.1:9", api_key="k", thinking="native")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(st.just("m")))
def test_validated_bodies_never_trip_a_dialect(body):
    """Either validate refuses with a 400 naming a field, or every dialect builds a request it can send."""
    body = orjson.loads(json.dumps(body))   # as read_body sees it (integers past 64 bits become floats)
    try:
        protocol.validate(body, drop_unsupported=True)
    except InvalidRequest as err:
        assert err.status == 400 and err.type == "invalid_request_error" and err.param
        assert err.code in ("invalid_type", "missing_required_parameter", "invalid_value"), err.code
        return
    estimate_prompt(body)
    stream = body.get("stream") is True
    for dialect in (openai, anthropic, mock):
        req = dialect.build_request(copy.deepcopy(body), VIEW, stream)
        orjson.dumps(req.body)   # what the transport sends must encode
    req = mock.build_request(copy.deepcopy(body), VIEW, stream)
    mock.answer(req)
    mock.stream_events(req)


# ---------------------------------------------------------------- the same, over HTTP to a gateway process

class ThreadedUpstream:
    """The scripted fake provider on its own event loop in a thread, for a gateway subprocess to call."""

    def __init__(self) -> None:
        self.fake = FakeUpstream()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.fake.app())
        self.loop.run_until_complete(runner.setup())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> ThreadedUpstream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


ROUTES = """
settings:
  limits: {default_rpm: 1000000, default_tpm: 1000000000, default_budget: 1000000000,
           max_rpm: 1000000, max_tpm: 1000000000, max_budget: 1000000000}
providers:
  up: {dialect: openai, base_url: "%(url)s/v1", api_key: upstream-secret-key-123}
  claude: {dialect: anthropic, base_url: "%(url)s", api_key: sk-ant-upstream-secret}
  demo: {dialect: mock}
routes:
  gpt: {targets: [{provider: up, model: up-model, thinking: native}]}
  claude: {targets: [{provider: claude, model: claude-sonnet, thinking: native}]}
  demo: {targets: [{provider: demo, model: chat, thinking: native}]}
"""


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory):
    from tests.procs import GatewayProcess

    with ThreadedUpstream() as up:
        routes = ROUTES % {"url": f"http://127.0.0.1:{up.port}"}
        proc = GatewayProcess(tmp_path_factory.mktemp("hostile"), routes=routes)
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()
    log = proc.log.read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


KNOWN = [  # the shapes issue 12 found, on every route kind, before the random ones
    {"model": m, "messages": messages} for m in ("gpt", "claude", "demo") for messages in (
        [USER, {"role": "assistant", "tool_calls": 5}],
        [USER, {"role": "assistant", "tool_calls": [{"function": "abc"}]}],
        [USER, {"role": "assistant", "tool_calls": ["call_1"]}],
        [{"role": "user", "content": ["hi", 1]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}],
        [USER, {"role": "assistant", "tool_calls": [_call()]}, {"role": "tool", "tool_call_id": "c1", "content": [7]}],
    )]


def _examples(test):
    for body in KNOWN:
        test = example(body=body)(test)
    return test


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(st.sampled_from(["gpt", "claude", "demo"])))
@_examples
def test_hostile_shapes_over_http_never_500(hostile_target, body):
    """Never a 500; and a 400 is validation's, naming the field (not a dialect's trip caught late)."""
    status, text = hostile_target.post_json(body)
    assert status < 500, (status, text)
    if status >= 400:
        err = check_error(json.loads(text))
        assert status == 400 and err["param"] and err["code"] in FIELD_CODES, (status, err)


FIELD_CODES = ("invalid_type", "missing_required_parameter", "invalid_value", "unsupported_parameter")
