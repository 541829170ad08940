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
import gzip
import json
import zlib
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
