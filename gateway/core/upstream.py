"""Talking to upstreams: the shared connection pool (core/http1.py) and its errors, translated here.

Every failure of an attempt becomes one `AttemptFailed` saying whether a retry
may help; nothing from the HTTP client escapes this module. No answer is read
past `settings.max_upstream_bytes` (a whole body, or all of one stream), and an
error body only as far as `ERROR_BODY_BYTES`.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, cast

import orjson

from gateway.clock import Clock
from gateway.core.http1 import Answer, answer_words
from gateway.core.pool import BadHeader, Pool
from gateway.core.table import TargetEntry
from gateway.core.translate import unreadable
from gateway.dialects.base import Completion, Dialect, LocalDialect, UpstreamError, UpstreamRequest
from gateway.scrub import shapes

log = logging.getLogger("gateway.core.upstream")

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 10.0
ERROR_BODY_BYTES = 64 * 1024   # an upstream's error body is read this far: any real message fits


class AttemptFailed(Exception):
    """One upstream attempt failed; `kind` is connect | timeout | status | auth | protocol | too_large.

    `details` keeps the upstream error's own `type`, `code` and `param`, so a
    rejected request can come back to the client as the upstream said.
    """

    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, details: dict[str, str] | None = None):
        super().__init__(message)
        self.kind, self.message, self.status = kind, shapes(message), status
        self.retryable, self.retry_after = retryable, retry_after
        self.details = details or {}

    @property
    def client_fault(self) -> bool:
        """The upstream refused what the client asked (a plain 4xx): no sign of an unhealthy target."""
        return self.kind == "status" and not self.retryable and self.status is not None and self.status < 500


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait: `retry-after-ms` (OpenAI) or `Retry-After` seconds, capped."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return min(max(float(value) * scale, 0.0), MAX_RETRY_AFTER)
            except ValueError:
                continue
    return None


def _error_fields(data: Any) -> dict[str, str]:
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return {}
    return {k: err[k] for k in ("type", "code", "param") if isinstance(err.get(k), str) and err[k]}


def _status_failure(status: int, body: bytes, headers: Mapping[str, str], dialect: Dialect) -> AttemptFailed:
    """The upstream's refusal; its words are scrubbed by the app's scrubber where `Attempts` catches it."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message = dialect.error_message(data) if data is not None else None
    message = message or body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    if status in (401, 403):
        return AttemptFailed("auth", message, status=status)
    return AttemptFailed("status", message, status=status, retryable=status in RETRYABLE_STATUS,
                         retry_after=_retry_after(headers), details=_error_fields(data))


def _error_body(data: Any, dialect: Dialect) -> AttemptFailed | None:
    """A 2xx whose body is an error: a provider malfunction, retried like a 5xx."""
    message = dialect.error_message(data)
    if message is None:
        return None
    return AttemptFailed("protocol", f"upstream answered 200 with an error: {message}", retryable=True)


def too_large(limit: int) -> AttemptFailed:
    """An answer past `max_upstream_bytes`: not retried, the same request would most likely get it again."""
    return AttemptFailed("too_large", f"upstream answer over {limit} bytes (settings.max_upstream_bytes)")


async def _read_body(answer: Answer, limit: int, when: float) -> bytes | bytearray:
    """The whole body as it arrives; past `limit` bytes the attempt fails and the rest is never read.

    A body that arrives in one piece is returned as it is; more pieces grow one bytearray (no second copy),
    which orjson parses as it is.
    """
    length = answer.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    body: bytes | bytearray = b""
    while chunk := await _until(answer, when):
        if not body:
            body = chunk
        else:
            if isinstance(body, bytes):
                body = bytearray(body)
            body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return body


async def _until(answer: Answer, when: float) -> bytes:
    data = await answer.read(when)
    if data is None:
        raise TimeoutError
    return data


async def _read_head(answer: Answer, when: float, limit: int = ERROR_BODY_BYTES) -> bytes:
    """At most `limit` bytes of the body; the rest stays unread (the connection is then closed, not reused)."""
    body = bytearray()
    while len(body) < limit and (chunk := await _until(answer, when)):
        body += chunk
    return bytes(body[:limit])


def network_words(exc: BaseException) -> str:
    """What went wrong on the wire, in words a client and an operator read (never a class name)."""
    words = answer_words(exc)
    if words is not None:
        return words
    strerror = getattr(exc, "strerror", None)
    return strerror.lower() if isinstance(strerror, str) and strerror else "a network error"


class _translated:
    """Turns a wait past its deadline (TimeoutError, raised by core/http1.py at the deadline it was
    given: no timer of its own) and the transport's and the OS's errors into `AttemptFailed`."""

    __slots__ = ("_timeout", "_what")

    def __init__(self, timeout: float, what: str):
        self._timeout, self._what = timeout, what

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        if isinstance(exc, TimeoutError):
            raise AttemptFailed("timeout", f"upstream {self._what} within {self._timeout:g}s",
                                retryable=True) from None
        if isinstance(exc, OSError):
            raise AttemptFailed("connect", f"upstream connection failed: {network_words(exc)}",
                                retryable=True) from None
        if isinstance(exc, BadHeader):   # from routes.yaml or a client's pass-through header: never sent
            raise AttemptFailed("connect", f"upstream request not sent: {exc}") from None
        return False


def _broke(exc: OSError) -> UpstreamError:
    return UpstreamError(f"upstream connection broke mid-stream: {network_words(exc)}", retryable=True)


class RemoteBody:
    """A streamed answer's body; `read` is safe to cancel (a timeout) and call again.

    It counts down `limit` bytes (all of the stream, comments too): past it, `too_large`.
    """

    __slots__ = ("_answer", "_left", "_limit")

    def __init__(self, answer: Answer, limit: int):
        self._answer, self._left, self._limit = answer, limit, limit

    def read_nowait(self) -> bytes | None:
        """What has arrived (b"" at the end), or None: the caller then waits in `read`, under its deadline."""
        try:
            data = self._answer.read_nowait()
        except OSError as exc:
            raise _broke(exc) from None
        return self._counted(data)

    async def read(self, when: float) -> bytes | None:
        """The next bytes (b"" at the end), or None at loop time `when`."""
        try:
            data = await self._answer.read(when)
        except OSError as exc:
            raise _broke(exc) from None
        return self._counted(data)

    def _counted(self, data: bytes | None) -> bytes | None:
        if data:
            self._left -= len(data)
            if self._left < 0:
                raise too_large(self._limit)
        return data

    def close(self) -> None:
        self._answer.release()


class LocalBody:
    """The in-process dialect's stream, with its artificial per-chunk latency."""

    __slots__ = ("_events", "_delay", "_clock")

    def __init__(self, events: list[bytes], delay: float, clock: Clock):
        self._events = events if delay else [b"".join(events)]
        self._events.reverse()
        self._delay, self._clock = delay, clock

    def read_nowait(self) -> bytes | None:
        """Without a delay every event is ready at once; with one, each waits for `read`."""
        if self._delay and self._events:
            return None
        return self._events.pop() if self._events else b""

    async def read(self, when: float) -> bytes | None:
        """The next event (b"" at the end), or None at loop time `when`."""
        if not self._events:
            return b""
        if self._delay:
            try:
                async with asyncio.timeout_at(None if when == math.inf else when):
                    await self._clock.sleep(self._delay)
            except TimeoutError:
                return None
        return self._events.pop()

    def close(self) -> None:
        self._events = []


Parse = Callable[[Any], Completion]


def _parsed(dialect: Dialect, data: Any, parse: Parse | None = None) -> Completion:
    """A whole answer in neutral form; a dialect that cannot read it fails the attempt, never the gateway."""
    try:
        return (parse or dialect.parse_response)(data)
    except UpstreamError as exc:
        raise AttemptFailed("protocol", exc.message, retryable=exc.retryable) from None
    except Exception as exc:  # a dialect tripped on an answer no fixture had: the upstream's fault
        raise AttemptFailed("protocol", unreadable(exc).message) from None


class LocalTransport:
    """Dialects answered in-process (`transport = "local"`: the mock), with the target's artificial latency."""

    def __init__(self, clock: Clock):
        self.clock = clock

    async def complete(self, target: TargetEntry, req: UpstreamRequest, timeout: float, *, limit: int,
                       parse: Parse | None = None) -> Completion:
        if target.delay:
            await self.clock.sleep(target.delay)
        return _parsed(target.dialect, _local(target).answer(req), parse)

    async def open_stream(self, target: TargetEntry, req: UpstreamRequest, timeout: float, *,
                          limit: int) -> LocalBody:
        return LocalBody(_local(target).stream_events(req), target.delay, self.clock)


def _local(target: TargetEntry) -> LocalDialect:
    """`Upstream.transport` sends here only targets whose dialect says `transport = "local"`."""
    return cast(LocalDialect, target.dialect)


class Upstream:
    """The HTTP transport to remote providers; `transport(target)` picks it or the in-process one."""

    def __init__(self, pool: Pool, clock: Clock):
        self.pool = pool
        self._local = LocalTransport(clock)

    def transport(self, target: TargetEntry) -> Upstream | LocalTransport:
        return self._local if getattr(target.dialect, "transport", "http") == "local" else self

    @classmethod
    def create(cls, clock: Clock) -> Upstream:
        # No cap on connections: every open stream holds one, and a capped pool would queue requests
        # silently inside their header timeout (1000 held streams got 256 connections).
        return cls(Pool(), clock)

    async def close(self) -> None:
        await self.pool.close()

    async def complete(self, target: TargetEntry, req: UpstreamRequest, timeout: float, *, limit: int,
                       parse: Parse | None = None) -> Completion:
        """A whole (non-streamed) answer of at most `limit` bytes, translated by the target's dialect
        (`parse`: another reader of it, such as the dialect's `parse_embeddings`)."""
        return _parsed(target.dialect, await self._call(target.dialect, req, timeout, limit), parse)

    async def json(self, target: TargetEntry, req: UpstreamRequest, timeout: float, *, limit: int) -> Any:
        """Any other JSON call to a provider (Anthropic's token count, say): its answer, unread."""
        return await self._call(target.dialect, req, timeout, limit)

    async def _call(self, dialect: Dialect, req: UpstreamRequest, timeout: float, limit: int) -> Any:
        """The answer's JSON, whatever its shape: the dialect judges it."""
        when = asyncio.get_running_loop().time() + timeout
        async with _translated(timeout, "did not answer"):
            answer = await self.pool.post(req.url, req.headers, orjson.dumps(req.body), when)
            try:
                if answer.status >= 300:
                    raise _status_failure(answer.status, await _read_head(answer, when), answer.headers, dialect)
                body = await _read_body(answer, limit, when)
            finally:
                answer.release()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AttemptFailed("protocol", "upstream answered with a body that is not JSON", retryable=True) from None
        failure = _error_body(data, dialect)
        if failure is not None:
            raise failure
        return data

    async def open_stream(self, target: TargetEntry, req: UpstreamRequest, timeout: float, *,
                          limit: int) -> RemoteBody:
        """Send the request and wait (at most `timeout`) for the answer's headers; the stream reads `limit` bytes."""
        dialect = target.dialect
        loop = asyncio.get_running_loop()
        async with _translated(timeout, "sent no headers"):
            answer = await self.pool.post(req.url, req.headers, orjson.dumps(req.body), loop.time() + timeout)
            if answer.status >= 300:
                try:
                    body = await _read_head(answer, loop.time() + timeout)
                finally:
                    answer.release()
                raise _status_failure(answer.status, body, answer.headers, dialect)
        content_type = answer.headers.get("content-type", "")
        if "json" in content_type and "event-stream" not in content_type:
            try:   # a 200 answering a stream request with JSON: most likely an error body
                body = await _read_head(answer, loop.time() + timeout)
                data = orjson.loads(body)
            except (TimeoutError, OSError, orjson.JSONDecodeError):
                data = None
            finally:
                answer.release()
            raise _error_body(data, dialect) or AttemptFailed(
                "protocol", "upstream answered a stream request without a stream", retryable=True)
        return RemoteBody(answer, limit)
