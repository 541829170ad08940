"""One handler for every model endpoint: admission, attempts across targets, and the answer.

`endpoint(front)` makes the handler of one client API: it reads the body, lets the
front check it and turn it neutral, books it against the key's limits, then
either waits for a whole answer or relays a stream, and lets the front encode
what goes back. Every request with a valid key leaves exactly one ledger row,
whatever happens (`finally`).
"""
from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.appkeys import (
    ACCESS_LOG,
    CLOCK,
    ENVELOPE,
    KEYS,
    LEDGER,
    LIMITER,
    METRICS,
    OPTIONS,
    REQUEST_ID,
    ROUTER,
    SCRUBBER,
    TABLE,
    TRACING,
    UPSTREAM,
)
from gateway.core import stored
from gateway.core.attempts import Attempts, Plan, plan, worst_cost
from gateway.core.exchange import Exchange
from gateway.core.relay import relay_stream
from gateway.core.table import RouteEntry, RoutingTable, TargetEntry
from gateway.core.upstream import AttemptFailed
from gateway.dialects.base import Completion
from gateway.errors import GatewayError, InvalidRequest, NotFound, PermissionDenied
from gateway.front.base import Answerer, ClientRequest, ContinuingFront, Front, StreamEncoder, without_thinking
from gateway.front.body import credential, read_body
from gateway.store import utc_iso
from gateway.tokens import estimate_prompt


def endpoint(front: Front) -> Handler:
    """The aiohttp handler of one front (a module of gateway.front)."""
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _handle(request, front)
    handle.__name__ = f"{front.name}_endpoint"
    return handle


async def _handle(request: web.Request, front: Front) -> web.StreamResponse:
    app = request.app
    clock, metrics = app[CLOCK], app[METRICS]
    started = clock.monotonic()
    request[ENVELOPE] = front.envelope
    try:
        key = app[KEYS].authenticate(credential(request))
    except GatewayError:
        metrics.unauthorized()
        raise
    table = app[TABLE].table
    ex = Exchange(request[REQUEST_ID], key, utc_iso(clock.now()), started)
    ex.endpoint = front.endpoint
    if (tracing := app[TRACING]) is not None:
        ex.trace = tracing.begin(request.headers, front.endpoint, ex.request_id)
    metrics.started()
    try:
        return await _serve(request, ex, table, front)
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
        metrics.ended()
        row = ex.finished(clock.monotonic())
        if ex.trace is not None:
            ex.trace.end(row)
        if ex.admission is not None:
            ex.admission.settle(clock.now(), row["total_tokens"], row["cost_usd"])
        app[LEDGER].record(row)
        metrics.observe(row)
        app[ACCESS_LOG].record(row, key.row.key_prefix)


async def _serve(request: web.Request, ex: Exchange, table: RoutingTable, front: Front) -> web.StreamResponse:
    app = request.app
    settings = table.settings
    body = await read_body(request, settings.max_body_bytes, app[OPTIONS].body_timeout)
    name = front.model_name(body)
    entry: RouteEntry | None = table.resolve(name)
    if entry is None:
        raise NotFound(f"The model {name!r} does not exist on this gateway.", param="model")
    ex.routed(entry.name)
    if not ex.key.allows(entry.name):
        raise PermissionDenied(f"This key may not use the model {entry.name!r}.", param="model")
    ex.streaming(body.get("stream") is True)   # said before decoding, so a refused request's row says it too
    asked: ClientRequest = front.decode(body, settings.unsupported_params == "drop", request.headers)
    if asked.recall is not None:   # it continues a stored answer: the whole conversation, translated
        asked = await stored.resume(app, cast(ContinuingFront, front), asked, ex.key.row.id)
    candidates = entry.candidates(asked.thinking)
    if not candidates and getattr(front, "thinking_optional", False):
        asked, candidates = without_thinking(asked), entry.candidates(False)
    if asked.dropped:
        ex.headers["x-gateway-dropped-params"] = ",".join(asked.dropped)
    if not candidates:
        raise InvalidRequest(f"No target of {entry.name!r} supports thinking.", param="thinking",
                             code="thinking_not_supported")
    prompt = estimate_prompt(asked.body) + asked.unseen
    plans = plan(asked, candidates)
    clock = app[CLOCK]
    ex.admitted(await app[LIMITER].admit(ex.key, clock.now(), prompt, worst_cost(plans, prompt)))
    order = app[ROUTER].order(entry.name, entry.route, list(plans), clock.now())
    created = int(clock.now())
    speaker: Answerer = asked.answerer or front
    if asked.stream:
        encoders: list[StreamEncoder] = []   # one per attempt; the last is the one that answered

        def encoder() -> StreamEncoder:
            encoders.append(speaker.stream_encoder(ex.request_id, created, entry.name, asked.include_usage, prompt))
            return encoders[-1]
        response = await relay_stream(request, ex, entry, order, plans, encoder)
        if asked.keep and encoders:
            stored.keep(app, ex, cast(ContinuingFront, front), asked, utc_iso(clock.now()), encoder=encoders[-1])
        return response
    done = await _complete(request, ex, entry, order, plans)
    answer, usage, estimated = speaker.answer(done, ex.request_id, created, entry.name, prompt)
    ex.book(usage, estimated)
    ex.answered(clock.monotonic())
    if asked.keep:
        stored.keep(app, ex, cast(ContinuingFront, front), asked, utc_iso(clock.now()), answer=answer)
    return web.Response(body=answer, content_type="application/json", headers=ex.headers)


async def _complete(request: web.Request, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                    plans: dict[TargetEntry, Plan]) -> Completion:
    app = request.app
    upstream = app[UPSTREAM]
    limit = app[TABLE].table.settings.max_upstream_bytes
    attempts = Attempts(app, ex, entry, order, plans)
    while True:
        target, chosen = attempts.next()
        try:
            done = await upstream.transport(target).complete(target, chosen.request, entry.route.timeout, limit=limit,
                                                             parse=chosen.parse)
        except AttemptFailed as exc:
            await attempts.failed(exc)   # raises the client's error when no attempt is left
            continue
        attempts.succeeded()
        return done
