"""SPEC section 6 against a fake upstream that fails on cue: retries, timeouts, broken streams, disconnects."""
from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pytest

from gateway.clock import SkippingClock
from tests.conftest import check_error, check_stream, joined, parse_sse
from tests.fakes import Behaviour, openai_sse
from tests.waits import until

SECRET = "upstream-secret-key-123"
HELLO = {"role": "user", "content": "hi"}


def one_route(url: str, retries: int = 2, timeout: float = 1.0) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: {SECRET}}}
  up2: {{dialect: openai, base_url: "{url}/v1", api_key: {SECRET}}}
routes:
  r:
    retries: {retries}
    timeout: {timeout}
    targets:
      - {{provider: up, model: up-model, price: {{input: 1.0, output: 2.0}}}}
  two:
    retries: {retries}
    timeout: {timeout}
    targets:
      - {{provider: up, model: up-model}}
      - {{provider: up2, model: other-model}}
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ask(model: str = "r", stream: bool = False) -> dict:
    body = {"model": model, "messages": [HELLO]}
    if stream:
        body["stream"] = True
    return body


async def started(start_gateway, upstream, clock=None, **kwargs):
    gw = await start_gateway(routes_yaml=one_route(upstream.url, **kwargs), clock=clock)
    return gw, (await gw.create_key())["key"]


async def last_row(gw) -> dict:
    return (await gw.rows())[-1]


# -- retries on provider errors ------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 503, 429, 529, 408])
@pytest.mark.parametrize("stream", [False, True])
async def test_success_after_a_retryable_status(start_gateway, upstream, status, stream):
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(status=status))
    resp = await gw.post(key, ask(stream=stream))
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-gateway-attempts"] == "2"
    if stream:
        check_stream(parse_sse(await resp.read()), "r")
    assert len(upstream.requests) == 2
    row = await last_row(gw)
    assert row["status"] == "ok" and row["attempts"] == 2 and row["http_status"] == 200


async def test_retry_after_is_honoured(start_gateway, upstream):
    clock = SkippingClock()
    gw, key = await started(start_gateway, upstream, clock)
    upstream.queue(Behaviour(status=429, headers={"Retry-After": "1"}))
    resp = await gw.post(key, ask())
    assert resp.status == 200 and resp.headers["x-gateway-attempts"] == "2"
    assert len(clock.slept) == 1 and clock.slept[0] == pytest.approx(1.0, abs=0.05), clock.slept


async def test_retry_after_ms_is_honoured(start_gateway, upstream):
    clock = SkippingClock()
    gw, key = await started(start_gateway, upstream, clock)
    upstream.queue(Behaviour(status=429, headers={"retry-after-ms": "600"}))
    resp = await gw.post(key, ask())
    assert resp.status == 200
    assert len(clock.slept) == 1 and clock.slept[0] == pytest.approx(0.6, abs=0.05), clock.slept


async def test_retry_after_does_not_hold_back_another_provider(start_gateway, upstream):
    # Retry-After speaks for the server that said it; the next target is someone else
    clock = SkippingClock()
    gw, key = await started(start_gateway, upstream, clock)
    upstream.queue(Behaviour(status=429, headers={"Retry-After": "5"}))
    resp = await gw.post(key, ask("two"))
    assert resp.status == 200 and resp.headers["x-gateway-provider"] == "up2"
    assert all(s <= 0.25 for s in clock.slept), clock.slept   # the jittered backoff alone, not the 5 s


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_is_not_retried_and_passed_back(start_gateway, upstream, status):
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(status=status, json={"error": {
        "message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error",
        "param": "messages", "code": "context_length_exceeded"}}))
    resp = await gw.post(key, ask("two"))
    assert resp.status == status
    err = check_error(await resp.json(), "context_length_exceeded")
    assert "maximum context length is 8192" in err["message"] and err["param"] == "messages"
    assert resp.headers["x-gateway-attempts"] == "1" and len(upstream.requests) == 1
    row = await last_row(gw)
    assert row["status"] == "error" and row["attempts"] == 1 and row["http_status"] == status


async def test_upstream_error_echoing_our_key_is_redacted(start_gateway, upstream, caplog):
    caplog.set_level(logging.INFO)
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(status=400, json={"error": {"message": f"bad request for key {SECRET}"}}))
    resp = await gw.post(key, ask())
    text = await resp.text()
    assert resp.status == 400 and "bad request for key" in text
    assert SECRET not in text and SECRET not in caplog.text


@pytest.mark.parametrize("status", [401, 403])
async def test_upstream_auth_failure_is_502_and_logged_without_the_key(start_gateway, upstream, caplog, status):
    caplog.set_level(logging.INFO)
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(status=status, json={"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    resp = await gw.post(key, ask())
    assert resp.status == 502
    err = check_error(await resp.json(), "upstream_auth_failed")
    assert err["type"] == "api_error" and SECRET not in err["message"]
    assert resp.headers["x-gateway-attempts"] == "1" and len(upstream.requests) == 1   # same key, same answer
    logged = [r for r in caplog.records if "credentials" in r.getMessage()]
    assert logged and logged[0].levelno >= logging.ERROR and "up" in logged[0].getMessage()
    assert SECRET not in caplog.text
    row = await last_row(gw)
    assert row["status"] == "error" and row["error_code"] == "upstream_auth_failed" and row["http_status"] == 502


async def test_auth_failure_falls_back_to_another_provider(start_gateway, upstream, caplog):
    caplog.set_level(logging.INFO)
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(status=401))
    resp = await gw.post(key, ask("two"))
    assert resp.status == 200 and resp.headers["x-gateway-provider"] == "up2"
    assert resp.headers["x-gateway-attempts"] == "2"
    assert any("credentials" in r.getMessage() for r in caplog.records)   # the operator still hears of it


# -- all attempts fail ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_all_attempts_fail_names_the_last_status(start_gateway, upstream, stream):
    gw, key = await started(start_gateway, upstream, retries=2)
    upstream.queue(Behaviour(status=500), Behaviour(status=503), Behaviour(status=502))
    resp = await gw.post(key, ask(stream=stream))
    assert resp.status == 502
    err = check_error(await resp.json(), "upstream_error")
    assert err["type"] == "api_error" and "502" in err["message"]
    assert resp.headers["x-gateway-attempts"] == "3" and len(upstream.requests) == 3
    row = await last_row(gw)
    assert row["status"] == "error" and row["attempts"] == 3 and row["error_code"] == "upstream_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_before_headers_is_504_within_the_bound(start_gateway, upstream, stream):
    timeout, retries = 0.3, 1
    gw, key = await started(start_gateway, upstream, retries=retries, timeout=timeout)
    upstream.default = Behaviour(hang=30)
    began = time.monotonic()
    resp = await gw.post(key, ask(stream=stream))
    elapsed = time.monotonic() - began
    assert resp.status == 504
    check_error(await resp.json(), "upstream_timeout")
    attempts = retries + 1
    assert timeout * attempts <= elapsed < timeout * attempts + 0.25 + 0.5, elapsed   # backoff: at most 0.25 s
    assert resp.headers["x-gateway-attempts"] == str(attempts)
    row = await last_row(gw)
    assert row["status"] == "error" and row["error_code"] == "upstream_timeout" and row["attempts"] == attempts


async def test_connection_refused_is_retried_then_502(start_gateway, upstream):
    yaml = f"""
providers:
  gone: {{dialect: openai, base_url: "http://127.0.0.1:{closed_port()}/v1", api_key: {SECRET}}}
  up: {{dialect: openai, base_url: "{upstream.url}/v1", api_key: {SECRET}}}
routes:
  gone: {{retries: 2, timeout: 1, targets: [{{provider: gone, model: m}}]}}
  fallback: {{retries: 2, timeout: 1, targets: [{{provider: gone, model: m}}, {{provider: up, model: up-model}}]}}
"""
    gw = await start_gateway(routes_yaml=yaml)
    key = (await gw.create_key())["key"]
    resp = await gw.post(key, ask("gone"))
    assert resp.status == 502
    err = check_error(await resp.json(), "upstream_error")
    assert "connection" in err["message"] and resp.headers["x-gateway-attempts"] == "3"
    resp = await gw.post(key, ask("fallback", stream=True))
    assert resp.status == 200 and resp.headers["x-gateway-provider"] == "up"
    check_stream(parse_sse(await resp.read()), "fallback")


@pytest.mark.parametrize("stream", [False, True])
async def test_200_with_an_error_body_is_an_upstream_error(start_gateway, upstream, stream):
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(status=200, json={"error": {"message": "the model is overloaded"}}))
    resp = await gw.post(key, ask("two", stream=stream))
    # a provider malfunction like a 5xx: the next target answers
    assert resp.status == 200 and resp.headers["x-gateway-attempts"] == "2"
    upstream.default = Behaviour(status=200, json={"error": {"message": "the model is overloaded"}})
    resp = await gw.post(key, ask(stream=stream))
    assert resp.status == 502
    err = check_error(await resp.json(), "upstream_error")
    assert "the model is overloaded" in err["message"]


# -- streams -------------------------------------------------------------------------------------

def text_sse(pieces: list[str], done: bool = True) -> bytes:
    sse = openai_sse(pieces, usage=False)
    return sse if done else sse.removesuffix(b"data: [DONE]\n\n")


def one_error(events: list) -> dict:
    """The stream ended with exactly one error event and no [DONE]; returns that error."""
    assert "[DONE]" not in events
    errors = [e for e in events if "error" in e]
    assert len(errors) == 1 and errors[0] is events[-1], events
    return check_error(errors[0])


async def test_stalled_stream_is_cut_after_timeout(start_gateway, upstream):
    gw, key = await started(start_gateway, upstream, timeout=0.4)
    upstream.queue(Behaviour(sse=text_sse(["Hel", "lo", " there"]), events=True, stall_after=3))
    began = time.monotonic()
    resp = await gw.post(key, ask(stream=True))
    raw = await resp.read()
    elapsed = time.monotonic() - began
    assert resp.status == 200 and 0.4 <= elapsed < 1.2, elapsed
    events = parse_sse(raw)
    assert one_error(events)["code"] == "upstream_timeout"
    assert joined(events[:-1], "content") == "Hello"
    row = await last_row(gw)
    assert row["status"] == "error" and row["error_code"] == "upstream_timeout" and row["http_status"] == 200
    assert row["attempts"] == 1 and row["completion_tokens"] > 0


async def test_slow_but_live_stream_is_not_cut(start_gateway, upstream):
    gw, key = await started(start_gateway, upstream, timeout=0.4)
    upstream.queue(Behaviour(sse=text_sse(["a", "b", "c"]), events=True, delay=0.2))   # 6 events, 0.2 s apart
    began = time.monotonic()
    resp = await gw.post(key, ask(stream=True))
    chunks = check_stream(parse_sse(await resp.read()), "r")
    assert time.monotonic() - began > 1.0                     # well over the timeout, in live pieces
    assert joined(chunks, "content") == "abc"
    assert (await last_row(gw))["status"] == "ok"


async def test_a_trickle_of_comments_does_not_hold_a_stream_open(start_gateway, upstream):
    role, hi, *rest = text_sse(["Hi"]).split(b"\n\n")
    sse = role + b"\n\n" + hi + b"\n\n" + b": still working\n\n" * 100 + b"\n\n".join(rest)
    gw, key = await started(start_gateway, upstream, timeout=0.4)
    upstream.queue(Behaviour(sse=sse, events=True, delay=0.05))        # 5 s of comments, 0.05 s apart
    began = time.monotonic()
    resp = await gw.post(key, ask(stream=True))
    events = parse_sse(await resp.read())
    assert time.monotonic() - began < 1.2
    assert one_error(events)["code"] == "upstream_timeout" and joined(events[:-1], "content") == "Hi"


@pytest.mark.parametrize("behaviour", [
    Behaviour(sse=text_sse(["Hel", "lo", " there"]), events=True, reset_after=3),
    Behaviour(sse=text_sse(["Hel", "lo", " there"], done=False), events=True),
    Behaviour(sse=text_sse(["Hel", "lo"]).replace(b"data: [DONE]", b'data: {"error": {"message": "overloaded"}}'),
              events=True, delay=0.02),
], ids=["reset", "no-done", "error-event"])
async def test_stream_failing_after_first_chunk_ends_with_one_error_event(start_gateway, upstream, behaviour):
    gw, key = await started(start_gateway, upstream)
    upstream.queue(behaviour)
    resp = await gw.post(key, ask(stream=True, model="two"))
    assert resp.status == 200
    events = parse_sse(await resp.read())
    err = one_error(events)
    assert err["code"] == "upstream_error" and err["type"] == "api_error"
    assert joined(events[:-1], "content").startswith("Hello")
    assert len(upstream.requests) == 1                        # never retried once the client saw a chunk
    row = await last_row(gw)
    assert row["status"] == "error" and row["http_status"] == 200 and row["error_code"] == "upstream_error"
    assert row["completion_tokens"] > 0 and row["usage_source"] == "estimated"   # the partial usage stays


@pytest.mark.parametrize("failure", [Behaviour(status=503), Behaviour(sse=text_sse(["x"]), events=True, reset_after=0),
                                     Behaviour(sse=text_sse(["x"]), events=True, reset_after=1),
                                     Behaviour(sse=text_sse(["x"]), events=True, stall_after=1)],
                         ids=["503", "reset-at-once", "reset-after-role", "stall-after-role"])
async def test_stream_failing_before_first_chunk_is_retried_on_next_target(start_gateway, upstream, failure):
    gw, key = await started(start_gateway, upstream, timeout=0.4)
    upstream.queue(failure)
    resp = await gw.post(key, ask("two", stream=True))
    assert resp.status == 200 and resp.headers["x-gateway-attempts"] == "2"
    assert resp.headers["x-gateway-provider"] == "up2" and resp.headers["x-gateway-model"] == "other-model"
    chunks = check_stream(parse_sse(await resp.read()), "two")
    assert joined(chunks, "content") == "Hello from upstream"
    assert [r["model"] for r in upstream.requests] == ["up-model", "other-model"]
    row = await last_row(gw)
    assert row["attempts"] == 2 and row["status"] == "ok" and row["provider"] == "up2"


async def test_keep_alive_comments_during_silences(start_gateway, upstream):
    gw = await start_gateway(routes_yaml=one_route(upstream.url, timeout=1.0), keepalive_interval=0.1)
    key = (await gw.create_key())["key"]
    upstream.queue(Behaviour(sse=text_sse(["a"]), events=True, delay=0.3))   # 0.3 s between events
    resp = await gw.post(key, ask(stream=True))
    raw = await resp.read()
    assert raw.count(b": keep-alive\n\n") >= 3
    check_stream(parse_sse(raw), "r")


# -- the client goes away ------------------------------------------------------------------------

async def booked(gw) -> dict:
    """The last ledger row, once the cancelled handler's `finally` wrote it."""
    for _ in range(100):
        rows = await gw.rows()
        if rows:
            return rows[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("no ledger row")


async def test_client_disconnect_mid_stream_cancels_upstream(start_gateway, upstream):
    gw, key = await started(start_gateway, upstream)
    upstream.queue(Behaviour(sse=text_sse([" word"] * 40), events=True, delay=0.05))
    resp = await gw.post(key, ask(stream=True))
    for _ in range(3):
        assert (await resp.content.readuntil(b"\n\n")).startswith(b"data: {")
    resp.close()
    await until(lambda: upstream.cancelled == 1, within=1.0, every=0.01)
    assert upstream.active == 0
    row = await booked(gw)
    assert row["status"] == "cancelled" and row["stream"] == 1
    assert 0 < row["completion_tokens"] < 20 and row["cost_usd"] > 0    # what streamed, not the whole answer


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_while_waiting_cancels_upstream(start_gateway, upstream, stream):
    gw, key = await started(start_gateway, upstream, timeout=5)
    upstream.queue(Behaviour(hang=10))
    with pytest.raises(asyncio.TimeoutError):
        await gw.post(key, ask(stream=stream), timeout=aiohttp.ClientTimeout(total=0.3))
    await until(lambda: upstream.cancelled == 1, within=1.0, every=0.01)
    row = await booked(gw)
    assert row["status"] == "cancelled" and row["completion_tokens"] == 0 and row["stream"] == int(stream)
    assert len(upstream.requests) == 1                  # a client that left is not retried for


async def test_upstream_connections_are_pooled(start_gateway, upstream):
    gw, key = await started(start_gateway, upstream)
    for stream in (False, True, False, True):
        resp = await gw.post(key, ask(stream=stream))
        assert resp.status == 200
        await resp.read()
    assert len(set(upstream.peers)) == 1, upstream.peers   # one kept-alive connection, not one per request
