"""Reading a client's request body: size cap, arrival deadline, Content-Encoding, JSON object or a clear 4xx."""
from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import StreamReader, web

from gateway.errors import GatewayError, InvalidRequest

_DECODED = ("identity", "gzip", "deflate")   # aiohttp decompresses gzip and deflate as the body is read


async def read_body(request: web.Request, limit: int, timeout: float) -> dict[str, Any]:
    length = request.content_length
    if length is not None and length > limit:
        raise GatewayError(f"Request body is over the limit of {limit} bytes.", status=413, code="request_too_large")
    encoding = request.headers.get("Content-Encoding", "identity")
    try:
        data = await _read(request.content, limit, timeout)
    except web.RequestPayloadError:   # aiohttp could not decompress or unframe it: the client's bytes are wrong
        raise InvalidRequest(f"The request body cannot be decoded as its Content-Encoding ({encoding[:40]!r}) "
                             "says: send it compressed that way, or without the header.", code="invalid_json") from None
    if len(data) > limit:
        raise GatewayError(f"Request body is over the limit of {limit} bytes.", status=413, code="request_too_large")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        hint = "" if encoding.lower() in _DECODED else \
            f" (the gateway decodes Content-Encoding gzip and deflate, not {encoding[:40]!r})"
        raise InvalidRequest(f"The request body is not valid JSON{hint}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


async def _read(content: StreamReader, limit: int, timeout: float) -> bytearray:
    """Up to a little over `limit` bytes, decompressed if the client said gzip or deflate (aiohttp decodes
    those in bounded pieces as they are read, so a gzip bomb stops at the limit too)."""
    data = bytearray(content.read_nowait())   # usually the whole body is here already: then no timer
    if not content.at_eof():
        try:
            async with asyncio.timeout(timeout):
                while len(data) <= limit and (chunk := await content.readany()):
                    data += chunk
        except TimeoutError:
            raise GatewayError(f"The request body did not arrive within {timeout:g}s.", status=408,
                               code="request_timeout") from None
    return data


def credential(request: web.Request) -> str | None:
    """`Authorization: Bearer` as everywhere, or `x-api-key` as Anthropic's SDKs send it."""
    authorization = request.headers.get("Authorization")
    if authorization is None and (api_key := request.headers.get("x-api-key")) is not None:
        return "Bearer " + api_key
    return authorization
