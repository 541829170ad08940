"""A lean HTTP/1.1 client for the hot path: pooled keep-alive connections, llhttp's C parser (httptools).

aiohttp's client cost about a fifth of the gateway's CPU per request (a profile
in bench/PROFILE.md): URL objects, multidicts, payload classes and a stream
reader per request. The gateway sends one kind of request (a POST of JSON
bytes, at most a few headers) and reads one kind of answer, so this module does
only that: the request head and body leave in one write, the answer's head is
a plain dict with lower-case names, and its body arrives as the bytes the
socket gave (a stream's reader takes everything buffered in one call).

What it refuses rather than guesses: a header name or value holding a line
break or NUL (`BadHeader`, never sent); an answer in a content coding (it asks
for `identity`); a broken answer (`BrokenAnswer`: the connection closed or
the framing was wrong before the body's end). A connection goes back to the
pool only after an answer read to its end that allows keep-alive; any other
ends closed. A request that finds its reused connection closed before a byte of
answer arrived is sent once more on a new connection: the server closed an
idle connection as we wrote (the usual race of keep-alive), so it never saw
the request.
"""
from __future__ import annotations

import asyncio
import math
import socket
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024   # bytes buffered unread before the socket stops being read (a slow client)
KEEPALIVE = 30.0          # seconds an idle connection stays pooled


class BrokenAnswer(OSError):
    """The answer broke off or could not be parsed; `words` says how, for a client and an operator."""

    def __init__(self, words: str, *, before_answer: bool = False):
        super().__init__(words)
        self.words = words
        self.before_answer = before_answer   # not a byte of answer arrived: the server never took the request


class BadHeader(ValueError):
    """A header for the provider that would break the request's framing."""


class _Origin:
    """Where one base URL's requests go: host, port, TLS, and the head's fixed part."""

    __slots__ = ("host", "port", "tls", "key", "host_line")

    def __init__(self, scheme: str, host: str, port: int | None, netloc: str):
        self.tls = scheme == "https"
        self.host, self.port = host, port or (443 if self.tls else 80)
        self.key = (scheme, host, self.port)
        self.host_line = b"Host: " + netloc.encode("idna" if not netloc.isascii() else "ascii") + b"\r\n"


class Connection(asyncio.Protocol):
    """One socket to an origin, reading one answer at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]):
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self._answer: Answer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # uvloop's is not a subclass, but is one in kind
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None:        # bytes nobody asked for (on an idle connection): it cannot be reused
            self.close()
            return
        answer.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._answer is not None:
            self._answer.lost()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()


class Answer:
    """An answer being read: its status and head once `head` returns, then its body."""

    __slots__ = ("conn", "status", "headers", "_parser", "_chunks", "_buffered", "_complete", "_error",
                 "_waiter", "_got_bytes", "_framed", "_paused", "_reused", "_head_done", "_keep", "_when", "_timer")

    def __init__(self, conn: Connection, reused: bool):
        self.conn, self._reused = conn, reused
        self.status = 0
        self.headers: dict[str, str] = {}
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = self._head_done = self._got_bytes = self._paused = self._keep = False
        self._framed = False     # the body's end is known (Content-Length or chunked), not the connection's close
        self._error: BrokenAnswer | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._when = math.inf                     # the deadline of the wait under way (loop time)
        self._timer: asyncio.TimerHandle | None = None

    # -- the parser's callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key not in self.headers:    # a repeated field: the first counts (what aiohttp's `get` gave)
            self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._parser is not None     # it is calling us
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:    # an interim answer (100 Continue): the real one follows
            self.headers = {}
            return
        self._framed = "content-length" in self.headers or "chunked" in self.headers.get("transfer-encoding", "")
        coding = self.headers.get("content-encoding", "identity").strip().lower()
        if coding not in ("identity", ""):
            raise BrokenAnswer(f"the provider answered in a content coding ({coding[:40]}) the gateway did not ask for")
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.conn.transport is not None:
            self._paused = True
            self.conn.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and not self._head_done:
            return
        self._complete = True
        # asked here: the parser forgets once the message is over
        self._keep = self._parser is not None and self._parser.should_keep_alive()
        self._wake()

    # -- the connection's events -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._got_bytes = True
        parser = self._parser
        if self._complete or parser is None:   # more after the end: the connection is out of step, never reuse it
            self.conn.close()
            return
        try:
            parser.feed_data(data)
        except BrokenAnswer as exc:
            self._fail(exc)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, BrokenAnswer) else BrokenAnswer("the provider's answer is not HTTP"))
        except httptools.HttpParserError:
            self._fail(BrokenAnswer("the provider's answer is not HTTP"))

    def lost(self) -> None:
        if self._complete:
            return
        if self._head_done and not self._framed:   # a body delimited by the connection's close: its end
            self._complete = True
            self._wake()
        elif not self._got_bytes:
            self._fail(BrokenAnswer("the provider closed the connection", before_answer=True))
        else:
            self._fail(BrokenAnswer("the provider's answer broke off"))

    def _fail(self, error: BrokenAnswer) -> None:
        if self._error is None:
            self._error = error
        self.conn.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def _wait(self, when: float = math.inf) -> bool:
        """Until something happens (True) or loop time `when` (False).

        One lazy timer per answer rather than one per wait: it is armed for the nearest deadline, left
        armed when a wait ends early, and when it rings before the deadline of the wait then under way
        (a later one) it re-arms itself for it. A stream whose reads each wait a little costs a timer
        per `timeout` seconds, not per chunk.
        """
        loop = asyncio.get_running_loop()
        if when != math.inf:
            if loop.time() >= when:
                return False
            timer = self._timer
            if timer is None or timer.when() > when:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(when, self._ring)
        self._when = when
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        try:
            return await waiter
        finally:
            self._waiter = None

    def _ring(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._when == math.inf:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._when:
            waiter.set_result(False)
        else:
            self._timer = loop.call_at(self._when, self._ring)

    # -- what the caller reads -----------------------------------------------------------------------
    async def head(self, when: float = math.inf) -> None:
        """Until the answer's head has arrived; TimeoutError at loop time `when`."""
        while not self._head_done:
            if self._error is not None:
                raise self._error
            if not await self._wait(when):
                raise TimeoutError

    def read_nowait(self) -> bytes | None:
        """What is buffered (b"" at the body's end), or None when the caller must wait."""
        chunks = self._chunks
        if chunks:
            if len(chunks) == 1:
                data = chunks.popleft()
            else:
                data = b"".join(chunks)
                chunks.clear()
            self._buffered = 0
            if self._paused and self.conn.transport is not None:
                self._paused = False
                self.conn.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._error
        if self._complete:
            return b""
        return None

    async def read(self, when: float = math.inf) -> bytes | None:
        """The next bytes of the body, all that is buffered; b"" at its end; None at loop time `when`.
        Safe to cancel and call again."""
        while (data := self.read_nowait()) is None:
            if not await self._wait(when):
                return None
        return data

    @property
    def complete(self) -> bool:
        return self._complete

    def release(self) -> None:
        """Done with this answer: its connection goes back to the pool if the answer was read to its end."""
        conn = self.conn
        conn._answer = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parser = None    # it refers back to us: without the cycle the answer goes with its last reference
        if self._complete and self._keep and self._framed and not self._chunks and conn.reusable:
            conn.pool.put(conn)
        else:
            conn.close()


class Pool:
    """Idle keep-alive connections per origin (most recently used first), and the sending of requests."""

    def __init__(self, keepalive: float = KEEPALIVE):
        self.keepalive = keepalive
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._origins: dict[str, tuple[_Origin, bytes]] = {}
        self._tls: ssl.SSLContext | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    def _origin(self, url: str) -> tuple[_Origin, bytes]:
        """The origin and the request line of `url`, parsed once per URL."""
        known = self._origins.get(url)
        if known is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadHeader(f"not an http(s) URL: {url[:200]}")
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            _check(target)
            known = (_Origin(parts.scheme, parts.hostname, parts.port, parts.netloc.rpartition("@")[2]),
                     b"POST " + target.encode("ascii", "strict") + b" HTTP/1.1\r\n")
            if len(self._origins) > 4096:   # base URLs come from routes.yaml: a bound against reloads piling up
                self._origins.clear()
            self._origins[url] = known
        return known

    def put(self, conn: Connection) -> None:
        if self.closed:
            conn.close()
            return
        now = asyncio.get_running_loop().time()
        conn.idle_since = now
        idle = self._idle.setdefault(conn.key, [])
        while idle and now - idle[0].idle_since > self.keepalive:   # the oldest first: stale ones leave
            idle.pop(0).close()
        idle.append(conn)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.keepalive, self._swept)

    def _swept(self) -> None:
        """Every `keepalive` seconds while any connection idles: close those idle longer."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        for key, idle in list(self._idle.items()):
            fresh = []
            for conn in idle:
                if conn.reusable and now - conn.idle_since <= self.keepalive:
                    fresh.append(conn)
                else:
                    conn.close()
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]
        if self._idle and not self.closed:
            self._sweep = asyncio.get_running_loop().call_later(self.keepalive, self._swept)

    def _take(self, key: tuple[str, str, int]) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since <= self.keepalive:
                return conn
            conn.close()
        return None

    async def _connect(self, origin: _Origin) -> Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        _, conn = await loop.create_connection(lambda: Connection(self, origin.key), origin.host, origin.port,
                                               ssl=tls, server_hostname=origin.host if tls else None)
        return conn

    async def post(self, url: str, headers: dict[str, str], body: bytes, when: float = math.inf) -> Answer:
        """Send a POST and wait for the answer's head; TimeoutError at loop time `when`."""
        origin, line = self._origin(url)
        head = bytearray(line)
        head += origin.host_line
        for name, value in headers.items():
            _check(name)
            _check(value)
            head += f"{name}: {value}\r\n".encode()
        head += b"Accept-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(body)
        head += body
        conn = self._take(origin.key)
        if conn is not None:
            try:
                return await self._exchange(conn, head, reused=True, when=when)
            except BrokenAnswer as exc:
                if not exc.before_answer:
                    raise
        if when == math.inf:
            conn = await self._connect(origin)
        else:
            async with asyncio.timeout_at(when):    # a new connection only: most requests reuse one
                conn = await self._connect(origin)
        return await self._exchange(conn, head, reused=False, when=when)

    async def _exchange(self, conn: Connection, data: bytearray, reused: bool, when: float) -> Answer:
        answer = Answer(conn, reused)
        conn._answer = answer
        try:
            if conn.transport is None or not conn.reusable:
                raise BrokenAnswer("the provider closed the connection", before_answer=True)
            conn.transport.write(data)
            await answer.head(when)
        except BaseException:
            conn._answer = None
            conn.close()
            raise
        return answer

    async def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _check(text: str) -> None:
    if "\r" in text or "\n" in text or "\x00" in text:
        raise BadHeader("a header or URL for the provider holds a line break or NUL")


def answer_words(exc: BaseException) -> str | None:
    """Words for an error this module or the OS raised, or None for anything else."""
    if isinstance(exc, BrokenAnswer):
        return exc.words
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "the TLS handshake with the provider failed"
    if isinstance(exc, socket.gaierror):
        return "the provider's host name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "could not connect to the provider (refused or unreachable)"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "the provider closed the connection"
    return None


__all__: list[Any] = ["Answer", "BadHeader", "BrokenAnswer", "Pool", "answer_words"]
