"""SPEC section 5 rule 8 before the first chunk: a silent upstream still gets the client headers and comments.

While attempts run (waiting for upstream headers, for the first content, or between retries) the
gateway may send the 200 headers and `: keep-alive` comments, never a data event; if every attempt
then fails, the stream is one error event and no [DONE].
"""
from __future__ import annotations

import itertools
import json
import time

from tests.conftest import check_error, check_stream, joined, parse_sse
from tests.fakes import Behaviour, openai_sse

EVERY = 0.1   # keepalive_interval in these tests
MSG = [{"role": "user", "content": "hi"}]


def routes(url: str, retries: int = 0, timeout: float = 2.0) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
routes:
  r:
    retries: {retries}
    timeout: {timeout}
    targets: [{{provider: up, model: up-model, price: {{input: 1.0, output: 2.0}}}}]
"""


async def gateway(start_gateway, upstream, **kwargs):
    gw = await start_gateway(routes(upstream.url, **kwargs), keepalive_interval=EVERY)
    gw.key = (await gw.create_key())["key"]
    return gw


async def timed_lines(gw) -> tuple[float, object, list[tuple[float, bytes]]]:
    """When the headers came, the response, and each line of the body with the time it came."""
    started = time.monotonic()
    resp = await gw.post(gw.key, {"model": "r", "stream": True, "messages": MSG})
    headers_at = time.monotonic() - started
    lines = [(time.monotonic() - started, line) async for line in resp.content]
    return headers_at, resp, lines


def before_first_data(lines: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    n = next(i for i, (_, line) in enumerate(lines) if line.startswith(b"data:"))
    return lines[:n]


def comments(lines: list[tuple[float, bytes]]) -> list[float]:
    return [at for at, line in lines if line == b": keep-alive\n"]


async def test_headers_and_keepalives_while_the_first_content_is_late(start_gateway, upstream):
    # the role chunk (no content: the gateway holds it back), then 0.6 s of silence, then the answer
    upstream.queue(Behaviour(sse=openai_sse(["Hello", " there"]), events=True, pause_after=1, pause=0.6))
    gw = await gateway(start_gateway, upstream)
    headers_at, resp, lines = await timed_lines(gw)
    assert resp.status == 200 and headers_at < 0.4, headers_at
    early = comments(before_first_data(lines))
    assert len(early) >= 3 and early[0] < 0.4, early
    assert all(b - a < 3 * EVERY for a, b in itertools.pairwise(early)), early
    chunks = check_stream(parse_sse(b"".join(line for _, line in lines)), "r")
    assert joined(chunks, "content") == "Hello there"
    row = (await gw.rows())[-1]
    assert row["status"] == "ok" and row["http_status"] == 200 and row["ttft_ms"] >= 600


async def test_waiting_for_upstream_headers_counts_as_silence(start_gateway, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["Hi"]), hang=0.6))
    gw = await gateway(start_gateway, upstream)
    headers_at, resp, lines = await timed_lines(gw)
    assert resp.status == 200 and headers_at < 0.4, headers_at
    assert len(comments(before_first_data(lines))) >= 3
    check_stream(parse_sse(b"".join(line for _, line in lines)), "r")


async def test_a_retry_after_keepalives_streams_into_the_same_response(start_gateway, upstream):
    # the first attempt goes silent after its role chunk past the route timeout; the retry answers
    upstream.queue(Behaviour(sse=openai_sse(["x"]), events=True, stall_after=1))
    gw = await gateway(start_gateway, upstream, retries=1, timeout=0.5)
    headers_at, resp, lines = await timed_lines(gw)
    assert resp.status == 200 and headers_at < 0.4
    assert len(comments(before_first_data(lines))) >= 3
    chunks = check_stream(parse_sse(b"".join(line for _, line in lines)), "r")
    assert joined(chunks, "content") == "Hello from upstream"
    assert len(upstream.requests) == 2
    row = (await gw.rows())[-1]
    assert row["status"] == "ok" and row["attempts"] == 2


async def test_every_attempt_failing_after_keepalives_is_one_error_event(start_gateway, upstream):
    stall = Behaviour(sse=openai_sse(["x"]), events=True, stall_after=1)
    upstream.queue(stall, stall)
    gw = await gateway(start_gateway, upstream, retries=1, timeout=0.5)
    headers_at, resp, lines = await timed_lines(gw)
    assert resp.status == 200 and headers_at < 0.4
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["x-request-id"] and resp.headers["x-gateway-provider"] == "up"
    assert resp.headers["x-gateway-model"] == "up-model" and resp.headers["x-gateway-attempts"]
    assert len(comments(lines)) >= 5
    data = [line for _, line in lines if line.startswith(b"data:")]
    assert len(data) == 1 and lines[-2][1] == data[0]      # the one event, last, after the comments
    events = parse_sse(b"".join(line for _, line in lines))
    assert events == [events[0]] and "[DONE]" not in events
    err = check_error(events[0], "upstream_timeout")
    assert err["type"] == "api_error"
    assert len(upstream.requests) == 2
    row = (await gw.rows())[-1]
    assert row["status"] == "error" and row["http_status"] == 200 and row["error_code"] == "upstream_timeout"
    assert row["attempts"] == 2 and row["request_id"] == resp.headers["x-request-id"]


async def test_a_quick_failure_is_still_a_plain_error_answer(start_gateway, upstream):
    upstream.queue(Behaviour(status=400, json={"error": {"message": "bad", "type": "invalid_request_error"}}))
    gw = await gateway(start_gateway, upstream)
    _, resp, _ = await timed_lines(gw)
    assert resp.status == 400 and resp.headers["content-type"].startswith("application/json")


async def test_an_upstream_refusal_after_keepalives_is_an_event_with_scrubbed_fields(start_gateway, upstream):
    # a 400 that comes after the headers went out: the status cannot change, so it is the one error
    # event; its message echoes our key and its code is no short code: neither reaches the event or the row
    body = {"error": {"message": "no, upstream-secret-key-123", "code": "Not A Short Code!"}}
    upstream.queue(Behaviour(status=400, hang=0.4, json=body))
    gw = await gateway(start_gateway, upstream, retries=1)
    _, resp, lines = await timed_lines(gw)
    assert resp.status == 200 and len(comments(lines)) >= 2
    events = parse_sse(b"".join(line for _, line in lines))
    assert len(events) == 1 and "upstream-secret" not in json.dumps(events)
    err = check_error(events[0], "upstream_rejected")
    assert err["message"].startswith("no, ")
    assert len(upstream.requests) == 1                      # a 4xx is not retried, headers or not
    row = (await gw.rows())[-1]
    assert row["status"] == "error" and row["http_status"] == 200 and row["error_code"] == "upstream_rejected"
