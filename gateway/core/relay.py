"""The one stream loop: attempts until a stream starts, then its translated bytes to the client.

Before the first chunk reaches the client a failure is retried on the next
target; after it, the stream ends with the client API's one error event (no
`[DONE]`, no `message_stop`). `timeout` bounds every wait for the next chunk; long waits get keep-alive comments,
from the start: while attempts still run, the 200 headers and comments (never a data event) may
go out, and if every attempt then fails the stream is that one error event.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.appkeys import CLOCK, OPTIONS, SCRUBBER, TABLE, UPSTREAM
from gateway.core.attempts import Attempts, Plan, client_error
from gateway.core.exchange import Exchange
from gateway.core.table import RouteEntry, TargetEntry
from gateway.core.translate import StreamTranslator
from gateway.core.upstream import AttemptFailed, LocalBody, RemoteBody
from gateway.dialects.base import UpstreamError
from gateway.errors import GatewayError
from gateway.front.base import StreamEncoder

_STREAM_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}

_Silence = Callable[[], Awaitable[None]]   # what runs when the upstream has been quiet for a while


class _EventStream(web.StreamResponse):
    """The headers leave with the first chunk, in one write, rather than alone at prepare()."""

    _send_headers_immediately = False   # aiohttp's own switch (web.Response sets it too)


class _Opening:
    """The client's side while attempts run: after `every` seconds with nothing for the client, the
    200 headers and a `: keep-alive` go out (and another each `every` seconds), though a retry may still
    come. A timer, not a task, so a stream whose first chunk comes in time pays almost nothing.
    """

    __slots__ = ("_request", "_ex", "_every", "_idle", "_loop", "_timer", "_beat", "_done", "response")

    def __init__(self, request: web.Request, ex: Exchange, every: float, idle: Callable[[], StreamEncoder]):
        self._request, self._ex, self._every, self._idle = request, ex, every, idle
        self._loop = asyncio.get_running_loop()
        self._beat: asyncio.Task[None] | None = None
        self._done = False
        self.response: _EventStream | None = None
        self._timer = self._loop.call_later(every, self._due)

    def _due(self) -> None:
        self._beat = self._loop.create_task(self._keepalive())

    async def _keepalive(self) -> None:
        try:
            await (await self._prepared()).write(self._idle().keepalive)
        except ConnectionResetError:
            return   # the client left: the handler is cancelled, or its next write says so
        if not self._done:
            self._timer = self._loop.call_later(self._every, self._due)

    async def _prepared(self) -> _EventStream:
        if self.response is None:
            self.response = _EventStream(status=200, headers={**_STREAM_HEADERS, **self._ex.headers})
            self._ex.opened()
            await self.response.prepare(self._request)
        return self.response

    async def settle(self) -> _EventStream | None:
        """No more keep-alives from here; the response if its headers went out (after any comment in flight)."""
        self._halt()
        beat, self._beat = self._beat, None
        if beat is not None:
            await beat
        return self.response

    async def open(self) -> _EventStream:
        """The response, prepared, for the first chunk."""
        await self.settle()
        return await self._prepared()

    def stop(self) -> None:
        """The request ends here (cancelled, or a bug): a comment in flight is dropped."""
        self._halt()
        if self._beat is not None:
            self._beat.cancel()

    def _halt(self) -> None:
        self._done = True
        self._timer.cancel()


class _Leg:
    """One upstream stream being read: its body and the translator of its bytes."""

    __slots__ = ("body", "translator")

    def __init__(self, body: RemoteBody | LocalBody, translator: StreamTranslator):
        self.body, self.translator = body, translator


async def _next(leg: _Leg, timeout: float, on_silence: _Silence | None = None,
                every: float = 0.0) -> tuple[bytes, bool]:
    """The next bytes for the client, and whether the upstream closed; every failure is `AttemptFailed`.

    `timeout` bounds each wait for the next upstream event: comments are no
    progress, so a trickle of them cannot hold a stream open. `on_silence`
    runs every `every` seconds without anything for the client (keep-alives).
    """
    try:
        return await _read(leg, timeout, on_silence, every)
    except UpstreamError as exc:
        raise AttemptFailed("protocol", exc.message, status=exc.status, retryable=exc.retryable) from None


async def _read(leg: _Leg, timeout: float, on_silence: _Silence | None, every: float) -> tuple[bytes, bool]:
    loop = asyncio.get_running_loop()
    translator = leg.translator
    deadline = loop.time() + timeout
    tick = loop.time() + every if on_silence else math.inf
    while True:
        data = leg.body.read_nowait()   # what has arrived needs no timer
        if data is None:
            now = loop.time()
            if now >= deadline - 1e-6:
                raise AttemptFailed("timeout", f"upstream sent no event for {timeout:g}s", retryable=True)
            data = await leg.body.read(min(deadline, tick))
            if data is None:     # that time came first
                if on_silence is not None and loop.time() < deadline - 1e-6:
                    await on_silence()
                    tick = loop.time() + every
                continue
        if not data:
            return translator.end(), True
        seen = translator.events
        out = translator.feed(data)
        if out or translator.done:
            return out, False
        if translator.events > seen:
            deadline = loop.time() + timeout


async def _first(request: web.Request, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                 plans: dict[TargetEntry, Plan], encoder: Callable[[], StreamEncoder]) -> tuple[_Leg, bytes]:
    """Attempts until one stream yields its first client bytes; nothing reaches the client before."""
    app = request.app
    upstream, timeout = app[UPSTREAM], entry.route.timeout
    limit = app[TABLE].table.settings.max_upstream_bytes
    attempts = Attempts(app, ex, entry, order, plans)
    while True:
        target, chosen = attempts.next()
        try:
            body = await upstream.transport(target).open_stream(target, chosen.request, timeout, limit=limit)
            decoder = target.dialect.stream_decoder(chosen.native)
            if ex.trace is not None:   # notes the finish reason for the request's span
                decoder = ex.trace.watch(decoder)
            leg = _Leg(body, StreamTranslator(decoder, encoder()))
            try:
                first, _ = await _next(leg, timeout)
            except BaseException:
                body.close()
                raise
        except AttemptFailed as exc:
            await attempts.failed(exc)   # raises the client's error when no attempt is left
            continue
        attempts.succeeded()
        return leg, first


async def relay_stream(request: web.Request, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                       plans: dict[TargetEntry, Plan], encoder: Callable[[], StreamEncoder]) -> web.StreamResponse:
    """`encoder()` makes the client API's stream encoder (a fresh one per attempt)."""
    app = request.app
    clock, scrubber = app[CLOCK], app[SCRUBBER]
    timeout, every = entry.route.timeout, app[OPTIONS].keepalive_interval
    made: list[StreamEncoder] = []

    def idle() -> StreamEncoder:
        """An encoder of no attempt's: it frames keep-alives, and the error of a stream no attempt started.
        Made only when one of those is due: most streams never need it."""
        if not made:
            made.append(encoder())
        return made[0]

    opening = _Opening(request, ex, every, idle)
    try:
        leg, first = await _first(request, ex, entry, order, plans, encoder)
    except GatewayError as err:
        sent = await opening.settle()
        if sent is None:
            raise    # nothing went out yet: an ordinary error answer
        ex.broke(err, scrubber)
        await _write_quietly(sent, idle().fail(err, scrubber))
        return sent
    except BaseException:
        opening.stop()
        raise
    try:
        response = await opening.open()
        ex.first_byte(clock.monotonic())
        await _pump(leg, response, first, timeout, every)
        ex.answered()
    except AttemptFailed as exc:   # only _pump raises these: the response is open
        error = client_error(exc, started=True)
        ex.broke(error, scrubber)
        await _write_quietly(response, leg.translator.encoder.fail(error, scrubber))
    except ConnectionResetError:
        ex.cancelled()
    except asyncio.CancelledError:
        ex.cancelled()
        raise
    finally:
        leg.body.close()
        builder = leg.translator.encoder
        ex.book(builder.final_usage(), builder.usage_estimated)
    return response


async def _pump(leg: _Leg, response: web.StreamResponse, out: bytes, timeout: float, every: float) -> None:
    """`out` (the first chunk's bytes), then the rest: each write takes all that has arrived, and the
    last one ends the body, so a stream that came whole leaves in one write, headers included."""
    beat = leg.translator.encoder.keepalive

    async def keepalive() -> None:
        await response.write(beat)

    while True:
        parts = [out]
        try:
            ended = _ready(leg, parts)
        except AttemptFailed:
            await response.write(b"".join(parts))   # what the client was to get goes out before the error
            raise
        out = b"".join(parts)
        if ended or leg.translator.done:
            break
        if out:
            await response.write(out)
        out, ended = await _next(leg, timeout, keepalive, every)
        if ended:
            break
    await response.write_eof(out + leg.translator.finish())


def _ready(leg: _Leg, parts: list[bytes]) -> bool:
    """Adds to `parts` what the upstream has sent already, translated, without waiting; True once it closed.
    On a failure `parts` keeps what was translated before it."""
    translator = leg.translator
    try:
        while not translator.done:
            data = leg.body.read_nowait()
            if data is None:
                return False
            if not data:
                parts.append(translator.end())
                return True
            parts.append(translator.feed(data))
    except UpstreamError as exc:
        raise AttemptFailed("protocol", exc.message, status=exc.status, retryable=exc.retryable) from None
    return False


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionResetError:
        pass
