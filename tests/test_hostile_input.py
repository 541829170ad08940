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
import json
from urllib.parse import urlsplit

from tests.conftest import MASTER, check_error

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
