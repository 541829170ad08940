"""Hostile upstreams: every kind of broken answer ends cleanly for the client, with a ledger row."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import check_error, parse_sse
from tests.fakes import Behaviour, openai_sse

ROUTES = """
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: sk-upstream-secret-0123456789}}
routes:
  gpt:
    retries: 0
    timeout: 2     # the trickle test needs it well under 5 s; 0.5 s gave 504s under a loaded CI (no headers in time)
    targets: [{{provider: up, model: m}}]
"""
MSG = [{"role": "user", "content": "x"}]


@pytest.fixture
async def gw(start_gateway, upstream):
    gw = await start_gateway(ROUTES.format(url=upstream.url))
    gw.key = (await gw.create_key())["key"]
    return gw


async def _stream(gw) -> tuple[int, list]:
    resp = await gw.post(gw.key, {"model": "gpt", "stream": True, "messages": MSG})
    raw = await resp.read()
    if resp.headers["content-type"].startswith("application/json"):
        check_error(await resp.json())
        return resp.status, []
    return resp.status, parse_sse(raw)


def _ends_in_one_error(events: list) -> dict:
    assert events and "[DONE]" not in events
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1 and errors[0] is events[-1]
    return errors[0]["error"]


@pytest.mark.parametrize("body", [
    b"data: {not json}\n\n",
    b"data: [1, 2, 3]\n\n",
    b'data: {"choices": "nonsense"}\n\ndata: [DONE]\n\n',
    b"\x00\xff\xfe garbage without any event framing",
    b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": 5}}]}\n\ndata: [DONE]\n\n',
])
async def test_malformed_streams_end_cleanly(gw, upstream, body):
    upstream.queue(Behaviour(sse=body))
    status, events = await _stream(gw)
    assert status in (200, 502)
    if status == 200 and "[DONE]" not in events:
        _ends_in_one_error(events)
    row = (await gw.rows())[-1]
    assert row["status"] in ("ok", "error")


async def test_stream_without_done_is_an_error_not_a_short_answer(gw, upstream):
    body = openai_sse(["Hello", " world"]).replace(b"data: [DONE]\n\n", b"")
    upstream.queue(Behaviour(sse=body, events=True, delay=0.01))
    status, events = await _stream(gw)
    assert status == 200
    _ends_in_one_error(events)
    assert (await gw.rows())[-1]["status"] == "error"


async def test_ten_megabyte_event_is_refused(gw, upstream):
    huge = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"a" * (10 * 1024 * 1024) + b'"}}]}\n\n'
    upstream.queue(Behaviour(sse=huge + b"data: [DONE]\n\n", chunk_size=65536))
    started = time.monotonic()
    status, events = await _stream(gw)
    assert time.monotonic() - started < 10
    if status == 200:
        _ends_in_one_error(events)
    else:
        assert status == 502
    assert (await gw.rows())[-1]["status"] == "error"


async def test_endless_trickle_of_comments_is_cut(gw, upstream):
    trickle = b"".join(b": still here\n\n" for _ in range(200))
    first = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    upstream.queue(Behaviour(sse=first + trickle, events=True, delay=0.05))
    started = time.monotonic()
    status, events = await _stream(gw)
    assert time.monotonic() - started < 5, "a stream that only trickles comments must hit the route timeout"
    assert status == 200
    _ends_in_one_error(events)


async def test_http_200_with_error_body(gw, upstream):
    upstream.queue(Behaviour(json={"error": {"message": "quota gone for sk-upstream-secret-0123456789"}}))
    resp = await gw.post(gw.key, {"model": "gpt", "messages": MSG})
    assert resp.status == 502
    err = check_error(await resp.json())
    assert "sk-upstream-secret" not in err["message"]


async def test_upstream_error_echoing_our_key_is_redacted(gw, upstream):
    upstream.queue(Behaviour(status=400, json={"error": {
        "message": "bad request from key sk-upstream-secret-0123456789 (Bearer sk-upstream-secret-0123456789)"}}))
    resp = await gw.post(gw.key, {"model": "gpt", "messages": MSG})
    text = await resp.text()
    assert resp.status == 400 and "upstream-secret" not in text and gw.key not in text


async def test_reset_mid_stream_leaves_no_stuck_task(gw, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["a", "b", "c", "d"]), events=True, delay=0.01, reset_after=3))
    status, events = await _stream(gw)
    assert status == 200
    _ends_in_one_error(events)
    await asyncio.sleep(0.1)
    pending = [t for t in asyncio.all_tasks() if "chat_completions" in repr(t.get_coro())]
    assert not pending


@pytest.mark.parametrize("reason", [["stop"], {"a": 1}, 7])
async def test_odd_finish_reason_types_end_as_stop(gw, upstream, reason):
    import json

    event = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": reason}]}
    upstream.queue(Behaviour(sse=b"data: " + json.dumps(event).encode() + b"\n\ndata: [DONE]\n\n"))
    status, events = await _stream(gw)
    assert status == 200 and events[-1] == "[DONE]"
    finishes = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    upstream.queue(Behaviour(json={"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": reason}]}))
    resp = await gw.post(gw.key, {"model": "gpt", "messages": MSG})
    assert resp.status == 200 and (await resp.json())["choices"][0]["finish_reason"] == "stop"
