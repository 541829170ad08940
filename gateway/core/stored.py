"""Stored answers (Responses' `store` and `previous_response_id`, SPEC section 10.2), seen from the core.

`resume` finds the answer a request continues (only the key that made it may) and lets the
front translate the whole conversation; `keep` hands a finished answer to the batched store
(no database round trip on the request path); `get_response` / `delete_response` serve
`GET` / `DELETE /v1/responses/{id}`; `pruning` deletes what is older than
`settings.responses_days`, once at start and then every `prune_interval` (time from the Clock).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from gateway.appkeys import CLOCK, KEYS, OPTIONS, RESPONSES, STORE, TABLE
from gateway.core.exchange import Exchange
from gateway.errors import NotFound
from gateway.front.base import ClientRequest, ContinuingFront, StreamEncoder
from gateway.front.body import credential
from gateway.store import utc_iso
from gateway.store.responses import ResponseMemory

log = logging.getLogger("gateway.core.stored")
PREFIX = "resp_"
DAY = 86400


async def resume(app: web.Application, front: ContinuingFront, asked: ClientRequest, key_id: str) -> ClientRequest:
    stored = await app[RESPONSES].find(asked.recall or "", key_id)
    if stored is None:
        raise NotFound(f"No response with id {asked.recall!r} was found.", param="previous_response_id",
                       code="previous_response_not_found")
    return front.resume(asked, stored.items, stored.output)


def keep(app: web.Application, ex: Exchange, front: ContinuingFront, asked: ClientRequest, created_at: str,
         answer: bytes | None = None, encoder: StreamEncoder | None = None) -> None:
    """Store the answer (a whole one, or a stream's once it finished) unless the client said `store: false`."""
    if not asked.keep:
        return
    if answer is None and encoder is not None:
        answer = front.stored_answer(encoder)
    if answer is not None:
        app[RESPONSES].keep(PREFIX + ex.request_id, ex.key.row.id, created_at, front.conversation(asked), answer)


async def get_response(request: web.Request) -> web.Response:
    key = request.app[KEYS].authenticate(credential(request))
    response_id = request.match_info["response_id"]
    text = await request.app[RESPONSES].answer(response_id, key.row.id)
    if text is None:
        raise _missing(response_id)
    return web.Response(text=text, content_type="application/json")


async def delete_response(request: web.Request) -> web.Response:
    key = request.app[KEYS].authenticate(credential(request))
    response_id = request.match_info["response_id"]
    if not await request.app[RESPONSES].delete(response_id, key.row.id):
        raise _missing(response_id)
    return web.Response(body=orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                        content_type="application/json")


def _missing(response_id: str) -> NotFound:
    """Another key's response is missing too: its id says nothing to this key."""
    return NotFound(f"No response with id {response_id[:80]!r} was found.", param="response_id",
                    code="response_not_found")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/responses/{response_id}", get_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)


async def memory_ctx(app: web.Application) -> AsyncIterator[None]:
    """The stored responses' writer, and their pruning, for the app's lifetime."""
    memory = ResponseMemory(app[STORE])
    memory.start()
    app[RESPONSES] = memory
    task = asyncio.create_task(_prune_forever(app, memory), name="responses-prune")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await memory.close()


async def _prune_forever(app: web.Application, memory: ResponseMemory) -> None:
    clock, interval = app[CLOCK], app[OPTIONS].prune_interval
    while True:
        days = app[TABLE].table.settings.responses_days   # a reload may change it
        try:
            gone = await memory.prune(utc_iso(clock.now() - days * DAY))
        except Exception as exc:   # the database is away: try again next time
            log.warning("pruning stored responses failed: %s", type(exc).__name__)
        else:
            if gone:
                log.info("pruned %d stored responses older than %d days", gone, days)
        await clock.sleep(interval)
