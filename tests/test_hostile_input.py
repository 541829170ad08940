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
import zlib
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import MASTER, check_error, default_routes

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
