"""The lean upstream client (gateway/core/pool.py and http1.py) against raw TCP servers that misbehave on cue.

Anything an upstream sends is hostile: whatever bytes come back, the client gives an answer or a
`BrokenAnswer` (never another exception, never a hang), and a connection goes back to the pool only
after an answer read whole that allows keep-alive.
"""
from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.http1 import HIGH_WATER, BrokenAnswer
from gateway.core.pool import BadHeader, Pool

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\": 1}\r\n"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """A TCP server whose `handler(reader, writer, connection_number)` writes whatever bytes it likes."""

    def __init__(self, handler: Handler):
        self.handler, self.connections, self.requests = handler, 0, []
        self.closed = 0

    async def __aenter__(self) -> RawServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer, self.connections)
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                pass
            finally:
                writer.close()
                self.closed += 1

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        """One whole request (head and Content-Length body), recorded."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        whole = head + await reader.readexactly(length)
        self.requests.append(whole)
        return whole


async def post(pool: Pool, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    answer = await pool.post(url, {"content-type": "application/json"}, body)
    try:
        data = b""
        while chunk := await answer.read():
            data += chunk
        return answer.status, data
    finally:
        answer.release()


async def test_a_kept_alive_connection_serves_the_next_request():
    async def handler(reader, writer, n):
        while True:
            await server.request(reader)
            writer.write(OK)

    async with RawServer(handler) as server:
        pool = Pool()
        for _ in range(3):
            assert await post(pool, server.url) == (200, b'{"ok": 1}\r\n')
        assert server.connections == 1 and len(server.requests) == 3
        await pool.close()


async def test_a_request_meeting_an_idle_close_is_sent_again_on_a_new_connection():
    """The server closes a kept-alive connection as the request arrives (keep-alive's race): not an error."""
    async def handler(reader, writer, n):
        await server.request(reader)
        if n == 1 and len(server.requests) == 2:
            return                   # the second request on the first connection: closed unanswered
        writer.write(OK)
        if n == 1:
            await server.request(reader)

    async with RawServer(handler) as server:
        pool = Pool()
        assert (await post(pool, server.url))[0] == 200
        assert (await post(pool, server.url))[0] == 200
        assert server.connections == 2
        await pool.close()


async def test_a_new_connection_closed_unanswered_is_an_error_not_a_loop():
    async def handler(reader, writer, n):
        await server.request(reader)

    async with RawServer(handler) as server:
        with pytest.raises(BrokenAnswer, match="closed the connection"):
            await post(Pool(), server.url)
        assert server.connections == 1


@pytest.mark.parametrize("name, value", [("x-evil", "a\r\nHost: other"), ("x-evil\r\nA", "b"), ("x", "nul\x00"),
                                         ("x", "lf\nonly")])
async def test_a_header_that_would_break_framing_is_never_sent(name, value):
    async def handler(reader, writer, n):
        await server.request(reader)

    async with RawServer(handler) as server:
        with pytest.raises(BadHeader):
            await Pool().post(server.url, {name: value}, b"{}")
        await asyncio.sleep(0.05)
        assert server.connections == 0


async def test_an_answer_in_a_content_coding_not_asked_for_is_refused():
    async def handler(reader, writer, n):
        request = await server.request(reader)
        assert b"Accept-Encoding: identity" in request
        body = zlib.compress(b'{"ok": 1}')
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async with RawServer(handler) as server:
        with pytest.raises(BrokenAnswer, match="content coding"):
            await post(Pool(), server.url)


async def test_a_body_ended_by_the_close_is_whole_and_its_connection_not_reused():
    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")

    async with RawServer(handler) as server:
        pool = Pool()
        assert await post(pool, server.url) == (200, b"all of it")
        assert await post(pool, server.url) == (200, b"all of it")
        assert server.connections == 2


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nConnection: close\r\n", b"HTTP/1.0 200 OK\r\n"])
async def test_an_answer_that_says_close_leaves_its_connection_closed(head):
    """Even when the server leaves the socket open after saying so: the connection is not reused."""
    async def handler(reader, writer, n):
        while True:
            await server.request(reader)
            writer.write(head + b"Content-Length: 2\r\n\r\nok")

    async with RawServer(handler) as server:
        pool = Pool()
        assert await post(pool, server.url) == (200, b"ok")
        assert await post(pool, server.url) == (200, b"ok")
        assert server.connections == 2
        await pool.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",                       # shorter than it said
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",          # no last chunk
])
async def test_an_answer_cut_short_is_broken_off(answer):
    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(answer)

    async with RawServer(handler) as server:
        with pytest.raises(BrokenAnswer, match="broke off"):
            await post(Pool(), server.url)


async def test_a_slow_reader_stops_the_socket_near_the_high_water_mark():
    """Back-pressure: an upstream far faster than its reader never fills memory past about HIGH_WATER."""
    piece = b"x" * 65536

    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(200):          # 13 MB
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = Pool()
        answer = await pool.post(server.url, {}, b"{}")
        await asyncio.sleep(0.3)      # the server writes as fast as it can meanwhile
        buffered = answer._buffered
        total = 0
        while chunk := await answer.read():
            total += len(chunk)
        answer.release()
        assert total == 200 * len(piece)
        assert buffered <= HIGH_WATER + 256 * 1024, buffered
        assert server.connections == 1
        await pool.close()


async def test_idle_connections_are_closed_after_the_keepalive():
    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(OK)
        await reader.read()           # until the client closes

    async with RawServer(handler) as server:
        pool = Pool(keepalive=0.05)
        await post(pool, server.url)
        assert server.closed == 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            if server.closed:
                break
        assert server.closed == 1
        await pool.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda head, rest: head + rest,
              st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 503 x\r\n", b"HTTP/1.0 200 OK\r\n",
                               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"]),
              st.lists(st.sampled_from([b"Content-Length: 3\r\n", b"Content-Length: -1\r\n",
                                        b"Content-Length: 99999999999999999999\r\n",
                                        b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n",
                                        b"Content-Encoding: br\r\n", b"X: \xff\xfe\r\n", b"\r\n", b"3\r\nabc\r\n",
                                        b"0\r\n\r\n", b"zz\r\n", b"abc", b"\x00"]), max_size=8)
              .map(b"".join))),
       keep=st.booleans())
async def test_any_bytes_from_an_upstream_give_an_answer_or_a_broken_answer(reply, keep, caplog):
    """`keep`: the server waits for another request on the connection (50 ms), else closes after answering.
    Nothing is logged as an error on the way (a protocol callback that raised would be)."""
    caplog.clear()
    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(reply)
        while keep:
            await writer.drain()
            await asyncio.wait_for(server.request(reader), 0.05)
            writer.write(reply)

    async with RawServer(handler) as server:
        pool = Pool()
        for _ in range(2):    # twice: a connection the first answer left in a bad state must not be reused
            try:
                async with asyncio.timeout(5):
                    status, _ = await post(pool, server.url)
                assert 100 <= status <= 999
            except BrokenAnswer:
                pass
        await pool.close()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


async def test_a_trickling_stream_waits_under_one_timer_and_a_silence_ends_at_its_deadline():
    """Each read of a stream waits with a deadline; one lazy timer serves them all (not one per chunk), a
    read past its deadline gives None, and what comes later is still read whole."""
    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(20):
            writer.write(b"1\r\n%d\r\n" % (i % 10))
            await writer.drain()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)                    # a silence longer than the reader's deadline
        writer.write(b"4\r\nlate\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = Pool()
        loop = asyncio.get_running_loop()
        answer = await pool.post(server.url, {}, b"{}")
        timers, got = set(), b""
        while len(got) < 20:
            data = await answer.read(loop.time() + 5)
            got += data
            if answer._timer is not None:
                timers.add(id(answer._timer))
        assert got == b"01234567890123456789"
        assert len(timers) == 1, len(timers)
        began = loop.time()
        assert await answer.read(loop.time() + 0.1) is None    # the silence outlasts this deadline
        assert 0.09 <= loop.time() - began < 0.25
        rest = b""
        while data := await answer.read(loop.time() + 5):
            rest += data
        assert rest == b"late"
        answer.release()
        await pool.close()


async def test_a_burst_of_new_connections_looks_the_host_up_once(monkeypatch):
    """Twenty requests at once to a host name: one lookup between them (each would be a thread's work),
    every address tried in turn (localhost may name ::1 first, where nothing listens); a failed lookup is
    not remembered."""
    async def handler(reader, writer, n):
        await server.request(reader)
        writer.write(OK)

    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    real = loop.getaddrinfo

    async def counted(host, *args, **kwargs):
        lookups.append(host)
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", counted)
    async with RawServer(handler) as server:
        pool = Pool()
        url = server.url.replace("127.0.0.1", "localhost")
        answers = await asyncio.gather(*(post(pool, url) for _ in range(20)))
        assert all(status == 200 for status, _ in answers)
        assert server.connections == 20 and lookups == ["localhost"]
        with pytest.raises(OSError):
            await post(pool, "http://no-such-host.invalid/v1/x")
        with pytest.raises(OSError):
            await post(pool, "http://no-such-host.invalid/v1/x")
        assert lookups.count("no-such-host.invalid") == 2
        await pool.close()


async def test_https_checks_the_certificate_and_the_host_name(tmp_path):
    """An https origin is spoken to over TLS with SNI, its certificate checked against the trusted CAs and
    its host name; a certificate for another name is refused as a TLS failure, never sent the request."""
    import shutil
    import ssl
    import subprocess

    from gateway.core.http1 import answer_words

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    seen = []

    async def serve(reader, writer):
        try:
            while True:    # requests on one connection until the client closes it
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                seen.append(head + await reader.readexactly(length))
                writer.write(OK)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        pool = Pool(tls=trusting)
        for _ in range(2):
            async with asyncio.timeout(10):
                assert await post(pool, f"https://localhost:{port}/v1/x") == (200, b'{"ok": 1}\r\n')
        assert len(seen) == 2 and b"Host: localhost:" in seen[0]   # and the connection was kept alive
        await pool.close()
        with pytest.raises(OSError) as refused:      # the certificate names localhost, not this address
            async with asyncio.timeout(10):
                await post(Pool(tls=trusting), f"https://127.0.0.1:{port}/v1/x")
        assert answer_words(refused.value) == "the TLS handshake with the provider failed"
        with pytest.raises(OSError):                 # the system's CAs do not know this certificate
            async with asyncio.timeout(10):
                await post(Pool(), f"https://localhost:{port}/v1/x")
        assert len(seen) == 2
    finally:
        server.close()
