"""POST /v1/chat/completions: admission, attempts across targets, and the answer.

The handler reads and checks the request, books it against the key's limits,
then either waits for a whole answer or relays a stream. Every request with a
valid key leaves exactly one ledger row, whatever happens (`finally`).
"""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway import logs, protocol
from gateway.appkeys import (CLOCK, KEYS, LEDGER, LIMITER, METRICS, OPTIONS, REQUEST_ID, ROUTER, SCRUBBER, TABLE,
                             UPSTREAM)
from gateway.attempts import Attempts, Plan, plan, worst_cost
from gateway.body import read_body
from gateway.errors import GatewayError, InvalidRequest, NotFound, PermissionDenied
from gateway.exchange import Exchange
from gateway.relay import relay_stream
from gateway.routing import RouteEntry, RoutingTable, TargetEntry
from gateway.store import utc_iso
from gateway.tokens import estimate_prompt
from gateway.transform import completion_body
from gateway.upstream import AttemptFailed

async def chat_completions(request: web.Request) -> web.StreamResponse:
    app = request.app
    clock, metrics = app[CLOCK], app[METRICS]
    started = clock.monotonic()
    try:
        key = app[KEYS].authenticate(request.headers.get("Authorization"))
    except GatewayError:
        metrics.unauthorized()
        raise
    table = app[TABLE].table
    ex = Exchange(request[REQUEST_ID], key, utc_iso(clock.now()), started)
    metrics.in_flight.inc()
    try:
        return await _serve(request, ex, table)
    except GatewayError as err:
        ex.refused(err, app[SCRUBBER])
        err.headers = {**ex.headers, **err.headers}
        raise
    except asyncio.CancelledError:
        ex.cancelled(499)
        raise
    except Exception:  # a bug of ours: the middleware answers 500; the row says what happened
        ex.crashed()
        raise
    finally:
        metrics.in_flight.dec()
        row = ex.finished(clock.monotonic())
        if ex.admission is not None:
            ex.admission.settle(clock.now(), row["total_tokens"], row["cost_usd"])
        app[LEDGER].record(row)
        metrics.observe(row)
        logs.access(row, key.row.key_prefix)


async def _serve(request: web.Request, ex: Exchange, table: RoutingTable) -> web.StreamResponse:
    app = request.app
    settings = table.settings
    body = await read_body(request, settings.max_body_bytes, app[OPTIONS].body_timeout)
    name = protocol.model_name(body)
    entry: RouteEntry | None = table.resolve(name)
    if entry is None:
        raise NotFound(f"The model {name!r} does not exist on this gateway.", param="model")
    ex.routed(entry.name)
    if not ex.key.allows(entry.name):
        raise PermissionDenied(f"This key may not use the model {entry.name!r}.", param="model")
    stream = body.get("stream") is True
    ex.streaming(stream)
    dropped = protocol.validate(body, settings.unsupported_params == "drop")
    if dropped:
        ex.headers["x-gateway-dropped-params"] = ",".join(dropped)
    thinking = protocol.thinking_enabled(body)
    candidates = entry.candidates(thinking)
    if not candidates:
        raise InvalidRequest(f"No target of {entry.name!r} supports thinking.", param="thinking",
                             code="thinking_not_supported")
    prompt = estimate_prompt(body)
    plans = plan(body, candidates, thinking, stream)
    clock = app[CLOCK]
    ex.admitted(await app[LIMITER].admit(ex.key, clock.now(), prompt, worst_cost(plans, prompt)))
    order = app[ROUTER].order(entry.name, entry.route, candidates, clock.now())
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await relay_stream(request, ex, entry, order, plans, prompt, include_usage)
    return await _complete(request, ex, entry, order, plans, prompt)


async def _complete(request: web.Request, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                    plans: dict[TargetEntry, Plan], prompt: int) -> web.Response:
    app = request.app
    upstream, clock = app[UPSTREAM], app[CLOCK]
    limit = app[TABLE].table.settings.max_upstream_bytes
    attempts = Attempts(app, ex, entry, order, plans)
    while True:
        target, chosen = attempts.next()
        try:
            done = await upstream.transport(target).complete(target, chosen.request, entry.route.timeout, limit=limit)
        except AttemptFailed as exc:
            await attempts.failed(exc)   # raises the client's error when no attempt is left
            continue
        attempts.succeeded()
        break
    answer, usage, estimated = completion_body(done, f"chatcmpl-{ex.request_id}", int(clock.now()), entry.name,
                                               prompt)
    ex.book(usage, estimated)
    ex.answered(clock.monotonic())
    return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=ex.headers)
