"""A client that never finishes its body is dropped after a bound, with a 408 and a ledger row."""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse


async def test_unfinished_body_is_dropped(start_gateway):
    gw = await start_gateway(body_timeout=0.5)
    key = (await gw.create_key())["key"]
    url = urlparse(gw.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"model\": \"demo\"").encode())
    await writer.drain()
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    assert time.monotonic() - started < 2
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    writer.close()
    row = (await gw.rows())[-1]
    assert row["status"] == "rejected" and row["http_status"] == 408
    resp = await gw.post(key, {"model": "demo", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200          # the server is healthy afterwards
