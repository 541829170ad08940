"""A lean HTTP/1.1 client for the hot path: one connection's protocol and its answer, llhttp's C parser.

aiohttp's client cost about a fifth of the gateway's CPU per request (a profile
in bench/PROFILE.md): URL objects, multidicts, payload classes and a stream
reader per request. The gateway sends one kind of request (a POST of JSON
bytes, at most a few headers, core/pool.py) and reads one kind of answer, so
this module does only that: the answer's head is a plain dict with lower-case
names, and its body arrives as the bytes the socket gave (a stream's reader
takes everything buffered in one call).

What it refuses rather than guesses: an answer in a content coding (the
request asks for `identity`); a broken answer (`BrokenAnswer`: the connection
closed or the framing was wrong before the body's end). A connection goes back
to its pool only after an answer read to its end that allows keep-alive; any
other ends closed.
"""
from __future__ import annotations

import asyncio
import math
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools

HIGH_WATER = 256 * 1024   # bytes buffered unread before the socket stops being read (a slow client)


class BrokenAnswer(OSError):
    """The answer broke off or could not be parsed; `words` says how, for a client and an operator."""

    def __init__(self, words: str, *, before_answer: bool = False):
        super().__init__(words)
        self.words = words
        self.before_answer = before_answer   # not a byte of answer arrived: the server never took the request


class Connection(asyncio.Protocol):
    """One socket to an origin, reading one answer at a time."""

    def __init__(self, put: Callable[[Connection], None], key: tuple[str, str, int]):
        self.put, self.key = put, key      # `put`: back to the pool it came from
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
            conn.put(conn)
        else:
            conn.close()


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
