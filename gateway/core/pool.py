"""Pooled keep-alive connections to providers, and the sending of a request (core/http1.py reads answers).

The request head and body leave in one write. What is refused rather than
guessed: a header name or value, or a URL, holding a line break or NUL
(`BadHeader`, never sent). A request that finds its reused connection closed
before a byte of answer arrived is sent once more on a new connection: the
server closed an idle connection as we wrote (the usual race of keep-alive),
so it never saw the request.
"""
from __future__ import annotations

import asyncio
import math
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from gateway.core.http1 import Answer, BrokenAnswer, Connection

KEEPALIVE = 30.0          # seconds an idle connection stays pooled
DNS_TTL = 300.0           # seconds a provider's looked-up addresses are used (aiohttp's default cache time)


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


class Pool:
    """Idle keep-alive connections per origin (most recently used first), and the sending of requests."""

    def __init__(self, keepalive: float = KEEPALIVE, dns_ttl: float = DNS_TTL, tls: ssl.SSLContext | None = None):
        """`tls`: the context for https origins (default: the system's trusted CAs, host names checked)."""
        self.keepalive, self.dns_ttl = keepalive, dns_ttl
        self._dns: dict[tuple[str, int], tuple[float, asyncio.Task[list[Any]]]] = {}
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._origins: dict[str, tuple[_Origin, bytes]] = {}
        self._tls = tls
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

    async def _addresses(self, origin: _Origin) -> list[Any]:
        """The origin's addresses, looked up once per `dns_ttl` seconds and shared by concurrent connects.

        Each lookup runs in a thread; without the cache a burst of 1,000 new streams to one provider asked
        the resolver 1,000 times. A failed lookup is not kept: the next connect asks again.
        """
        loop = asyncio.get_running_loop()
        key = (origin.host, origin.port)
        known = self._dns.get(key)
        if known is None or known[0] <= loop.time():
            lookup = loop.create_task(loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM))
            known = self._dns[key] = (loop.time() + self.dns_ttl, lookup)
        try:
            return await asyncio.shield(known[1])    # a waiter cancelled (a timeout) leaves the lookup to others
        except OSError:
            if self._dns.get(key) is known:
                del self._dns[key]
            raise

    async def _connect(self, origin: _Origin) -> Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        failure: OSError | None = None
        for family, _, _, _, address in await self._addresses(origin):
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(self.put, origin.key), address[0], address[1], family=family, ssl=tls,
                    server_hostname=origin.host if tls else None)
                return conn
            except OSError as exc:    # refused or unreachable there: the next address
                failure = exc
        raise failure or OSError(f"no address for {origin.host}")

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
