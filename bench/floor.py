"""The floor under the gateway: the same upstream call behind a bare server, nothing else.

`aiohttp`: an aiohttp web app with one route that reads the body, parses it, posts it upstream through
the gateway's own Pool and answers the upstream's JSON re-encoded. `raw`: the same on a bare asyncio
Protocol with httptools' request parser, one request per connection (what bench/instructions.sh's client
sends). Run by `SERVER=aiohttp|raw bash bench/instructions.sh ns`: the difference between the two is what
aiohttp's server costs per request, and the gateway's count less the aiohttp one is what the gateway does
(auth, limits, translation, ledger, metrics, logs). Env: UPSTREAM (a base URL ending in /v1), PORT.
"""
from __future__ import annotations

import asyncio
import os
import sys

import httptools
import orjson
import uvloop
from aiohttp import web

from gateway.core.pool import Pool

UPSTREAM, PORT = os.environ["UPSTREAM"], int(os.environ["PORT"])
HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}


async def relay(pool: Pool, body: bytes) -> bytes:
    answer = await pool.post(UPSTREAM + "/chat/completions", HEADERS, orjson.dumps(orjson.loads(body)))
    parts = []
    while part := await answer.read():
        parts.append(part)
    answer.release()
    return orjson.dumps(orjson.loads(b"".join(parts)))


def aiohttp_app() -> web.Application:
    pool = Pool()

    async def chat(request: web.Request) -> web.Response:
        return web.Response(body=await relay(pool, await request.read()), content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    return app


class Raw(asyncio.Protocol):
    """One request per connection, answered with `Connection: close`: enough for a sequential client."""

    pool: Pool

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url, self.body = b"", bytearray()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        asyncio.get_running_loop().create_task(self.answer())

    async def answer(self) -> None:
        out = b"ok" if self.url == b"/health" else await relay(self.pool, bytes(self.body))
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"   # type: ignore[attr-defined]
                             b"Content-Length: %d\r\n\r\n" % len(out) + out)
        self.transport.close()


async def raw() -> None:
    Raw.pool = Pool()
    server = await asyncio.get_running_loop().create_server(Raw, "127.0.0.1", PORT)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.install()
    if sys.argv[1:] == ["raw"]:
        asyncio.run(raw())
    else:
        web.run_app(aiohttp_app(), host="127.0.0.1", port=PORT, access_log=None, print=None)
