"""OpenTelemetry traces (SPEC 12): spans as a collector receives them, over real OTLP/HTTP.

The gateway exports to `tests/otlp.py`'s fake collector on a real port; each test force-flushes the
provider (on a thread, as the exporter blocks) until the spans it expects arrived, rather than sleeping.
"""
from __future__ import annotations

import pytest

from gateway.appkeys import TRACING
from gateway.ops.tracing import in_thread
from tests.conftest import MASTER
from tests.fakes import Behaviour, openai_sse
from tests.otlp import CLIENT, PROMPT, SERVER, STATUS_ERROR, chat, collector, exported, ids, traced, traced_routes  # noqa: F401  (fixtures)

CLIENT_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_non_streamed_request_is_a_server_span_with_one_attempt_span(traced, upstream, collector):  # noqa: F811
    created = await traced.create_key()
    resp = await traced.post(created["key"], chat())
    assert resp.status == 200, await resp.text()
    [server] = await exported(traced, collector, 1)
    assert server.kind == SERVER and server.name == "chat gpt" and server.parent_span_id == ""
    assert server.service == "llm-gateway" and server.status != STATUS_ERROR
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt"
    assert a["gen_ai.provider.name"] == "up" and a["gen_ai.response.model"] == "up-model"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 7)
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gateway.key_id"] == created["id"] and a["gateway.attempts"] == 1
    assert a["gateway.cost_usd"] == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)
    assert a["gateway.request_id"] == resp.headers["x-request-id"] and a["http.response.status_code"] == 200
    assert "error.type" not in a and server.events == []
    [attempt] = collector.children(server)
    assert attempt.kind == CLIENT and attempt.name == "chat up-model" and attempt.trace_id == server.trace_id
    assert attempt.attributes["gen_ai.provider.name"] == "up"
    assert attempt.attributes["gen_ai.request.model"] == attempt.attributes["gen_ai.response.model"] == "up-model"
    assert attempt.attributes["server.address"] == "127.0.0.1" and attempt.attributes["gateway.attempt"] == 1
    assert server.start <= attempt.start <= attempt.end <= server.end
    assert ids(upstream.headers[-1]["traceparent"]) == attempt.ids   # the upstream's parent is the attempt


async def test_a_streamed_request_has_its_first_token_event(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    resp = await traced.post(key, chat(stream=True))
    assert resp.status == 200 and (await resp.read()).endswith(b"data: [DONE]\n\n")
    [server] = await exported(traced, collector, 1)
    a = server.attributes
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 3)
    assert a["gen_ai.response.finish_reasons"] == ["stop"] and a["gen_ai.response.model"] == "up-model"
    [(name, at)] = server.events
    assert name == "gen_ai.first_token" and server.start < at <= server.end
    [attempt] = collector.children(server)
    assert attempt.kind == CLIENT and attempt.end <= server.end and attempt.end >= at   # it covers the stream
    assert ids(upstream.headers[-1]["traceparent"]) == attempt.ids


async def test_a_retried_request_shows_each_attempt_as_a_sibling(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    upstream.queue(Behaviour(status=503, json={"error": {"message": "busy"}}))
    resp = await traced.post(key, chat())
    assert resp.status == 200 and resp.headers["x-gateway-attempts"] == "2"
    [server] = await exported(traced, collector, 1)
    assert server.attributes["gateway.attempts"] == 2 and "error.type" not in server.attributes
    first, second = collector.children(server)
    assert first.attributes["error.type"] == "503" and first.status == STATUS_ERROR
    assert first.attributes["http.response.status_code"] == 503 and first.end <= second.start
    assert "error.type" not in second.attributes and second.status != STATUS_ERROR
    assert first.attributes["gen_ai.request.model"] == second.attributes["gen_ai.request.model"] == "up-model"
    assert (first.attributes["gateway.attempt"], second.attributes["gateway.attempt"]) == (1, 2)
    assert [ids(h["traceparent"]) for h in upstream.headers] == [first.ids, second.ids]


async def test_a_failed_request_says_its_error_type(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    upstream.queue(*[Behaviour(status=429, json={"error": {"message": "slow down"}})] * 3)
    resp = await traced.post(key, chat())
    assert resp.status == 502
    [server] = await exported(traced, collector, 1)
    assert server.attributes["error.type"] == "upstream_error" and server.status == STATUS_ERROR
    assert server.attributes["gateway.attempts"] == 3 and "gen_ai.response.finish_reasons" not in server.attributes
    attempts = collector.children(server)
    assert [s.attributes["error.type"] for s in attempts] == ["429"] * 3


async def test_a_client_that_leaves_mid_stream_ends_both_spans_cancelled(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    upstream.queue(Behaviour(sse=openai_sse(["a"] * 50), events=True, delay=0.05))
    resp = await traced.post(key, chat(stream=True))
    await resp.content.readline()
    resp.close()
    [server] = await exported(traced, collector, 1)
    assert server.attributes["gateway.status"] == "cancelled" and server.attributes["error.type"] == "cancelled"
    assert server.status != STATUS_ERROR   # the client's choice, not a failure of the gateway's
    [attempt] = collector.children(server)
    assert attempt.attributes["error.type"] == "cancelled" and attempt.end <= server.end


async def test_an_upstream_that_breaks_mid_stream_fails_its_attempt_span(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    upstream.queue(Behaviour(sse=openai_sse(["a"] * 20), events=True, reset_after=3))
    resp = await traced.post(key, chat(stream=True))
    assert resp.status == 200 and b'"error"' in await resp.read()
    [server] = await exported(traced, collector, 1)
    assert server.status == STATUS_ERROR and server.attributes["gateway.status"] == "error"
    assert server.attributes["error.type"] == "upstream_error" and len(server.events) == 1   # its first token came
    [attempt] = collector.children(server)
    assert attempt.status == STATUS_ERROR and attempt.attributes["error.type"] == "upstream_error"


async def test_a_refused_request_is_a_server_span_with_error_type_and_no_attempt(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key(rpm=1))["key"]
    assert (await traced.post(key, chat())).status == 200
    refused = await traced.post(key, chat())
    assert refused.status == 429
    first, second = await exported(traced, collector, 2)
    a = second.attributes
    assert a["error.type"] == "rate_limit_exceeded" and a["http.response.status_code"] == 429
    assert a["gateway.status"] == "rejected" and a["gateway.attempts"] == 0
    assert "gen_ai.usage.input_tokens" not in a and collector.children(second) == []
    assert len(collector.children(first)) == 1 and len(upstream.requests) == 1


async def test_a_clients_traceparent_is_the_parent_of_the_server_span(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    resp = await traced.post(key, chat(), headers={"traceparent": CLIENT_PARENT, "tracestate": "vendor=1"})
    assert resp.status == 200
    [server] = await exported(traced, collector, 1)
    assert (server.trace_id, server.parent_span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert server.trace_state == "vendor=1" and upstream.headers[-1]["tracestate"] == "vendor=1"
    [attempt] = collector.children(server)
    assert upstream.headers[-1]["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ids(upstream.headers[-1]["traceparent"]) == attempt.ids
    bad = await traced.post(key, chat(), headers={"traceparent": "00-zz-not-a-parent-01"})   # ignored, not fatal
    assert bad.status == 200
    _, fresh = await exported(traced, collector, 2)
    assert fresh.parent_span_id == "" and fresh.trace_id != server.trace_id


async def test_every_endpoint_has_a_server_span_with_its_operation(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    resp = await traced.http.post(f"{traced.url}/v1/messages", headers={"x-api-key": key}, json={
        "model": "gpt", "max_tokens": 20, "messages": [{"role": "user", "content": PROMPT}]})
    assert resp.status == 200, await resp.text()
    resp = await traced.http.post(f"{traced.base_url}/embeddings", headers={"Authorization": f"Bearer {key}"},
                                  json={"model": "gpt", "input": PROMPT})
    assert resp.status == 200, await resp.text()
    messages, embeddings = await exported(traced, collector, 2)
    assert messages.attributes["gen_ai.operation.name"] == "chat"
    assert messages.attributes["gateway.endpoint"] == "messages"
    assert embeddings.name == "embeddings gpt" and embeddings.attributes["gen_ai.operation.name"] == "embeddings"
    assert embeddings.attributes["gen_ai.usage.output_tokens"] == 0
    assert "gen_ai.response.finish_reasons" not in embeddings.attributes
    [attempt] = collector.children(embeddings)
    assert attempt.name == "embeddings up-model" and ids(upstream.headers[-1]["traceparent"]) == attempt.ids


async def test_no_prompt_completion_or_key_reaches_a_span(traced, upstream, collector):  # noqa: F811
    key = (await traced.create_key())["key"]
    for body in (chat(), chat(stream=True)):
        resp = await traced.post(key, body)
        assert resp.status == 200
        await resp.read()
    await exported(traced, collector, 2)
    exported_bytes = b"".join(collector.bodies)
    assert exported_bytes
    for secret in (PROMPT, "Hello from upstream", " from", key, key[8:], "upstream-secret-key-123", MASTER,
                   "Bearer", "authorization"):
        assert secret.encode() not in exported_bytes, secret


async def test_unsampled_traces_still_carry_a_traceparent_and_export_nothing(start_gateway, upstream, collector):  # noqa: F811
    gw = await start_gateway(routes_yaml=traced_routes(upstream.url, collector.url, ", sample_ratio: 0"))
    key = (await gw.create_key())["key"]
    assert (await gw.post(key, chat())).status == 200
    assert await in_thread(gw.app[TRACING].flush, 10)
    flags = int(upstream.headers[-1]["traceparent"].rsplit("-", 1)[1], 16)
    assert collector.spans == [] and not flags & 1   # not sampled: the upstream is told so too
