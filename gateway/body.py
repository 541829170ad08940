"""Reading a client's request body: size cap, arrival deadline, JSON object or a clear 4xx."""
from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest


async def read_body(request: web.Request, limit: int, timeout: float) -> dict[str, Any]:
    length = request.content_length
    if length is not None and length > limit:
        raise GatewayError(f"Request body is over the limit of {limit} bytes.", status=413, code="request_too_large")
    content = request.content
    data = bytearray(content.read_nowait())   # usually the whole body is here already: then no timer
    if not content.at_eof():
        try:
            async with asyncio.timeout(timeout):
                while len(data) <= limit and (chunk := await content.readany()):
                    data += chunk
        except TimeoutError:
            raise GatewayError(f"The request body did not arrive within {timeout:g}s.", status=408,
                               code="request_timeout") from None
    if len(data) > limit:
        raise GatewayError(f"Request body is over the limit of {limit} bytes.", status=413, code="request_too_large")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body
