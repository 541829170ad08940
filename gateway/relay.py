"""The one stream loop: upstream bytes -> SSE events -> dialect deltas -> OpenAI chunks.

Before the first chunk reaches the client a failure is retried on the next
target; after it, the stream ends with one `data: {"error": ...}` event and no
`[DONE]`. `timeout` bounds every wait for the next chunk; long waits get keep-alive comments,
from the start: while attempts still run, the 200 headers and comments (never a data event) may
go out, and if every attempt then fails the stream is that one error event.
"""
from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import web

from gateway.appkeys import CLOCK, OPTIONS, ROUTER, SCRUBBER, TABLE, UPSTREAM
from gateway.attempts import Exchange, Plan, attempt_loop
from gateway.dialects.base import UpstreamError
from gateway.errors import GatewayError, UpstreamFailed, error_event
from gateway.sse import KEEPALIVE, SSEDecoder
from gateway.transform import ChunkBuilder
from gateway.upstream import AttemptFailed
from gateway.routing import RouteEntry, TargetEntry

_STREAM_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}

log = logging.getLogger("gateway.relay")


class _EventStream(web.StreamResponse):
    """The headers leave with the first chunk, in one write, rather than alone at prepare()."""

    _send_headers_immediately = False   # aiohttp's own switch (web.Response sets it too)


class _Opening:
    """The client's side while attempts run: after `every` seconds with nothing for the client, the
    200 headers and a `: keep-alive` go out (and another each `every` seconds), though a retry may still
    come. A timer, not a task, so a stream whose first chunk comes in time pays almost nothing.
    """

    __slots__ = ("_request", "_ex", "_every", "_loop", "_timer", "_beat", "_done", "response")

    def __init__(self, request: web.Request, ex: Exchange, every: float):
        self._request, self._ex, self._every = request, ex, every
        self._loop = asyncio.get_running_loop()
        self._beat: asyncio.Task | None = None
        self._done = False
        self.response: _EventStream | None = None
        self._timer = self._loop.call_later(every, self._due)

    def _due(self) -> None:
        self._beat = self._loop.create_task(self._keepalive())

    async def _keepalive(self) -> None:
        try:
            await (await self._prepared()).write(KEEPALIVE)
        except ConnectionResetError:
            return   # the client left: the handler is cancelled, or its next write says so
        if not self._done:
            self._timer = self._loop.call_later(self._every, self._due)

    async def _prepared(self) -> _EventStream:
        if self.response is None:
            self.response = _EventStream(status=200, headers={**_STREAM_HEADERS, **self._ex.headers})
            self._ex.row["http_status"] = 200
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
    """One upstream stream being decoded."""

    __slots__ = ("body", "sse", "decoder", "builder", "events")

    def __init__(self, body, decoder, builder: ChunkBuilder):
        self.body, self.sse, self.decoder, self.builder = body, SSEDecoder(), decoder, builder
        self.events = 0   # upstream data events so far (comments are not events)

    def process(self, data: bytes) -> bytes:
        try:
            return self._process(data)
        except UpstreamError:
            raise
        except Exception as exc:  # a dialect tripped on input no fixture had: the upstream's fault, not a 500
            raise unreadable(exc) from None

    def _process(self, data: bytes) -> bytes:
        out = []
        push, feed = self.builder.push, self.decoder.feed
        events = self.sse.feed(data)
        self.events += len(events)
        for event in events:
            for delta in feed(event):
                chunk = push(delta)
                if chunk:
                    out.append(chunk)
            if self.decoder.done:
                break
        return b"".join(out)

    def end(self) -> bytes:
        """Upstream closed: decode what is left; a stream that never said it was done is broken."""
        out = [self.process(b"")] if not self.decoder.done else []
        if not self.decoder.done:
            try:
                for event in self.sse.flush():
                    for delta in self.decoder.feed(event):
                        out.append(self.builder.push(delta))
                for delta in self.decoder.finish():
                    out.append(self.builder.push(delta))
            except UpstreamError:
                raise
            except Exception as exc:  # as in `process`
                raise unreadable(exc) from None
        if not self.decoder.done:
            raise UpstreamError("upstream stream ended before it was complete", retryable=True)
        return b"".join(out)


def unreadable(exc: Exception) -> UpstreamError:
    log.warning("a dialect could not read an upstream answer: %s", type(exc).__name__)
    return UpstreamError("upstream sent an answer the gateway could not read")


async def _next(leg: _Leg, timeout: float, on_silence=None, every: float = 0.0) -> tuple[bytes, bool]:
    """The next bytes for the client, and whether the upstream closed.

    `timeout` bounds each wait for the next upstream event: comments are no
    progress, so a trickle of them cannot hold a stream open. `on_silence`
    runs every `every` seconds without anything for the client (keep-alives).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    tick = loop.time() + every if on_silence else math.inf
    while True:
        now = loop.time()
        if now >= deadline - 1e-6:
            raise AttemptFailed("timeout", f"upstream sent no event for {timeout:g}s", retryable=True)
        try:
            async with asyncio.timeout(min(deadline, tick) - now):
                data = await leg.body.read()
        except TimeoutError:
            if on_silence is not None and loop.time() < deadline - 1e-6:
                await on_silence()
                tick = loop.time() + every
            continue
        if not data:
            return leg.end(), True
        seen = leg.events
        out = leg.process(data)
        if out or leg.decoder.done:
            return out, False
        if leg.events > seen:
            deadline = loop.time() + timeout


async def relay_stream(request: web.Request, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                       plans: dict[TargetEntry, Plan], prompt: int, include_usage: bool) -> web.StreamResponse:
    app = request.app
    upstream, router, clock = app[UPSTREAM], app[ROUTER], app[CLOCK]
    timeout, every = entry.route.timeout, app[OPTIONS].keepalive_interval
    limit = app[TABLE].table.settings.max_upstream_bytes
    completion_id, created = f"chatcmpl-{ex.request_id}", int(clock.now())

    async def attempt(target: TargetEntry, req, began: float) -> tuple[_Leg, bytes]:
        reader = await upstream.open_stream(target.dialect, req, timeout, target.delay, limit=limit)
        leg = _Leg(reader, target.dialect.stream_decoder(),
                   ChunkBuilder(completion_id, created, entry.name, include_usage, prompt))
        try:
            first, _ = await _next(leg, timeout)   # nothing reaches the client before this
        except UpstreamError as exc:
            reader.close()
            raise AttemptFailed("protocol", exc.message, status=exc.status, retryable=exc.retryable) from None
        except BaseException:
            reader.close()
            raise
        router.succeeded(target, clock.monotonic() - began)
        return leg, first

    opening = _Opening(request, ex, every)
    try:
        leg, first = await attempt_loop(request, ex, entry, order, plans, attempt)
    except GatewayError as err:
        response = await opening.settle()
        if response is None:
            raise    # nothing went out yet: an ordinary error answer
        ex.row["status"], ex.row["error_code"] = "error", err.ledger_code(app[SCRUBBER])
        await _write_quietly(response, error_event(err, app[SCRUBBER]))
        return response
    except BaseException:
        opening.stop()
        raise
    try:
        response = await opening.open()
        ex.row["ttft_ms"] = round((clock.monotonic() - ex.started) * 1000, 3)
        await response.write(first)
        await _pump(leg, response, timeout, every)
        ex.row["status"] = "ok"
    except (UpstreamError, AttemptFailed) as exc:   # only _pump raises these: the response is open
        err = _mid_stream_error(exc)
        ex.row["status"], ex.row["error_code"] = "error", err.ledger_code(app[SCRUBBER])
        await _write_quietly(response, error_event(err, app[SCRUBBER]))
    except ConnectionResetError:
        ex.row["status"] = "cancelled"
    except asyncio.CancelledError:
        ex.row["status"] = "cancelled"
        raise
    finally:
        leg.body.close()
        usage = leg.builder.final_usage()
        ex.book(usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, leg.builder.usage_estimated)
    return response


async def _pump(leg: _Leg, response: web.StreamResponse, timeout: float, every: float) -> None:
    async def keepalive() -> None:
        await response.write(KEEPALIVE)

    while not leg.decoder.done:
        out, ended = await _next(leg, timeout, keepalive, every)
        if out:
            await response.write(out)
        if ended:
            break
    await response.write_eof(leg.builder.finish())   # the last chunks and the end of the body in one write


def _mid_stream_error(exc: Exception) -> GatewayError:
    if isinstance(exc, AttemptFailed) and exc.kind == "too_large":
        return UpstreamFailed(f"The upstream answer was too large: {exc.message}", code="upstream_too_large")
    if isinstance(exc, AttemptFailed) and exc.kind == "timeout":
        return GatewayError(f"Upstream stalled: {exc.message}", status=504, type="api_error", code="upstream_timeout",
                            foreign=True)
    return UpstreamFailed(f"The upstream stream failed: {getattr(exc, 'message', str(exc))}", foreign=True)


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionResetError:
        pass
