"""Thin HTTP handlers besides chat completions: models, health and metrics."""
from __future__ import annotations

import orjson
from aiohttp import web

from gateway.appkeys import KEYS, METRICS, STORE, TABLE
from gateway.errors import ServiceUnavailable

_CREATED = 1_700_000_000   # routes have no creation date; a fixed one keeps answers stable


async def list_models(request: web.Request) -> web.Response:
    key = request.app[KEYS].authenticate(request.headers.get("Authorization"))
    table = request.app[TABLE].table
    data = [{"id": name, "object": "model", "created": _CREATED, "owned_by": "gateway"}
            for name in table.routes if key.allows(name)]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    try:
        ok = await request.app[STORE].ping()
    except Exception:  # any sqlite failure means the database does not answer
        ok = False
    if not ok:
        raise ServiceUnavailable("The database does not answer.", code="database_unavailable")
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"})
