"""The SDK against the gateway against a fake Anthropic upstream: one clean OpenAI answer."""
from __future__ import annotations

import json

import pytest

from tests.conftest import COMPLETION_SCHEMA, check_stream, joined, parse_sse
from tests.fakes import Behaviour, fixture_sse

USER = [{"role": "user", "content": "What is 925 / 5?"}]


async def _stream(gateway, key, fixture: str, **extra):
    body = {"model": "claude", "stream": True, "stream_options": {"include_usage": True}, "messages": USER, **extra}
    resp = await gateway.post(key, body)
    assert resp.status == 200, await resp.text()
    return check_stream(parse_sse(await resp.read()), "claude", include_usage=True)


async def test_text_stream_with_usage_and_ledger_cost(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("anthropic/text-ping.sse"), chunk_size=50))
    chunks = await _stream(gateway, key, "text-ping")
    assert joined(chunks, "content").strip()
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (12, 30, 42)
    sent, headers = upstream.requests[-1], upstream.headers[-1]
    assert sent["model"] == "claude-sonnet" and sent["stream"] is True and sent["max_tokens"] == 4096
    assert headers["x-api-key"] == "sk-ant-upstream-secret" and headers["anthropic-version"]
    row = (await gateway.rows())[-1]
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (12, 30, 42)
    assert row["cost_usd"] == pytest.approx((12 * 3.0 + 30 * 15.0) / 1e6)
    assert row["usage_source"] == "upstream" and row["provider"] == "claude" and row["status"] == "ok"


async def test_thinking_stream_becomes_reasoning_content_with_signature(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("anthropic/thinking-signature.sse"), chunk_size=23))
    chunks = await _stream(gateway, key, "thinking", thinking={"type": "enabled", "budget_tokens": 2000})
    reasoning = joined(chunks, "reasoning_content")
    assert reasoning.startswith("The previous result was 925.") and "185" in reasoning
    assert "185" in joined(chunks, "content")
    signatures = [c["choices"][0]["delta"]["reasoning_signature"] for c in chunks
                  if c["choices"] and "reasoning_signature" in c["choices"][0]["delta"]]
    assert len(signatures) == 1 and signatures[0].startswith("EvQB")
    sent = upstream.requests[-1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert sent["max_tokens"] > 2000


async def test_tool_use_stream_becomes_tool_call_deltas(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("anthropic/tool-use-input-json-delta.sse"), chunk_size=40))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chunks = await _stream(gateway, key, "tool", tools=tools, tool_choice="auto")
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    first = calls[0]
    assert first["index"] == 0 and first["id"] and first["type"] == "function" and first["function"]["name"]
    args = "".join(tc["function"].get("arguments") or "" for tc in calls)
    assert json.loads(args) == {"location": "Paris"}
    assert next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])[
        "choices"][0]["finish_reason"] == "tool_calls"
    assert upstream.requests[-1]["tools"][0]["name"] == "get_weather"
    assert upstream.requests[-1]["tool_choice"] == {"type": "auto"}


async def test_sdk_stream_against_anthropic(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("anthropic/text-then-tool-use-pings.sse"), chunk_size=64))
    stream = await gateway.sdk(key).chat.completions.create(
        model="claude", messages=USER, stream=True, stream_options={"include_usage": True},
        tools=[{"type": "function", "function": {"name": "json", "parameters": {"type": "object"}}}])
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert json.loads("".join(tc.function.arguments or "" for tc in calls))["elements"]
    assert chunks[-1].usage.prompt_tokens == 849 and chunks[-1].usage.completion_tokens == 47


async def test_midstream_error_event_ends_stream_without_done(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("anthropic/error-midstream-fragment.sse"), chunk_size=60, delay=0.01))
    resp = await gateway.post(key, {"model": "claude", "stream": True, "messages": USER})
    assert resp.status == 200
    events = parse_sse(await resp.read())
    assert "[DONE]" not in events and "error" in events[-1]
    assert events[-1]["error"]["code"] == "upstream_error" and "Internal server error" in events[-1]["error"]["message"]
    assert joined([e for e in events[:-1]], "content")
    assert sum(1 for e in events if isinstance(e, dict) and "error" in e) == 1
    row = (await gateway.rows())[-1]
    assert row["status"] == "error"


async def test_non_stream_answer(gateway, key, upstream):
    upstream.queue(Behaviour(json={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet",
        "content": [{"type": "thinking", "thinking": "Divide.", "signature": "sig-1"},
                    {"type": "text", "text": "185"},
                    {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"x": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 9}}))
    resp = await gateway.post(key, {"model": "claude", "messages": USER, "max_tokens": 100})
    body = await resp.json()
    assert not list(COMPLETION_SCHEMA.iter_errors(body))
    message = body["choices"][0]["message"]
    assert message["content"] == "185" and message["reasoning_content"] == "Divide."
    assert message["reasoning_signature"] == "sig-1"
    assert message["tool_calls"][0]["function"] == {"name": "calc", "arguments": '{"x":1}'}
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["total_tokens"] == 29
    assert upstream.requests[-1]["max_tokens"] == 100


async def test_multi_turn_reasoning_goes_back_as_signed_thinking(gateway, key, upstream):
    history = [
        {"role": "user", "content": "What is 925 / 5?"},
        {"role": "assistant", "content": None, "reasoning_content": "Divide.", "reasoning_signature": "sig-1",
         "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "calc", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "185"},
    ]
    resp = await gateway.post(key, {"model": "claude", "messages": history,
                                    "thinking": {"type": "enabled"}})
    assert resp.status == 200, await resp.text()
    sent = upstream.requests[-1]["messages"]
    assert sent[1]["content"][0] == {"type": "thinking", "thinking": "Divide.", "signature": "sig-1"}
    assert sent[1]["content"][1]["type"] == "tool_use"
    assert sent[2]["role"] == "user" and sent[2]["content"][0]["type"] == "tool_result"


async def test_upstream_overload_is_retried(gateway, key, upstream):
    upstream.queue(Behaviour(status=529, json={"type": "error", "error": {"type": "overloaded_error",
                                                                         "message": "Overloaded"}}))
    resp = await gateway.post(key, {"model": "claude", "messages": USER})
    assert resp.status == 200 and resp.headers["x-gateway-attempts"] == "2"
