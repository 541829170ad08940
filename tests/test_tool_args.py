"""A tool call without arguments reaches OpenAI clients as `"arguments": "{}"`, streamed or not.

Anthropic answers a call to a tool without parameters with a `tool_use` block whose
`input` is `{}` and no `input_json_delta` text (or one with `partial_json: ""`);
some OpenAI-compatible upstreams send `"arguments": ""`. Clients `json.loads` the
arguments, so the gateway says "{}", as OpenAI does. Driven with the official SDK.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import check_stream, parse_sse
from tests.fakes import Behaviour, openai_sse

USER = [{"role": "user", "content": "What time is it, and the weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
         {"type": "function", "function": {"name": "weather", "parameters": {
             "type": "object", "properties": {"city": {"type": "string"}}}}}]


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def tool_use_stream(empty_delta: bool) -> bytes:
    """`now` with empty input (and, if asked, an empty input_json_delta), then `weather` with arguments."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                              "model": "claude-sonnet",
                                              "usage": {"input_tokens": 30, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "toolu_now", "name": "now", "input": {}}}]
    if empty_delta:
        events.append({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": ""}})
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_w", "name": "weather", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city"'}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": ': "Paris"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}},
        {"type": "message_stop"}]
    return anthropic_sse(*events)


def assembled(chunks) -> dict[int, dict[str, Any]]:
    """Tool calls put together the way the SDK's users do: by index, arguments concatenated."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or ()) if chunk.choices else ():
            call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = tc.id or call["id"]
            if tc.function:
                call["name"] = tc.function.name or call["name"]
                call["arguments"] += tc.function.arguments or ""
    return calls


@pytest.mark.parametrize("empty_delta", [False, True], ids=["no-input-json-delta", "empty-input-json-delta"])
async def test_anthropic_stream_tool_use_without_input_gets_empty_object(gateway, key, upstream, empty_delta):
    upstream.queue(Behaviour(sse=tool_use_stream(empty_delta), events=True))
    stream = await gateway.sdk(key).chat.completions.create(model="claude", messages=USER, tools=TOOLS, stream=True,
                                                            stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    calls = assembled(chunks)
    assert [calls[i]["name"] for i in sorted(calls)] == ["now", "weather"]
    assert calls[0]["arguments"] == "{}" and json.loads(calls[0]["arguments"]) == {}
    assert json.loads(calls[1]["arguments"]) == {"city": "Paris"}
    finishes = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0].choices[0].finish_reason == "tool_calls"
    assert not finishes[0].choices[0].delta.tool_calls, "the filled arguments come before the finish chunk"
    assert chunks[-1].usage.completion_tokens == 40


async def test_stream_fill_keeps_every_stream_rule(gateway, key, upstream):
    upstream.queue(Behaviour(sse=tool_use_stream(False), chunk_size=37))
    resp = await gateway.post(key, {"model": "claude", "messages": USER, "tools": TOOLS, "stream": True})
    chunks = check_stream(parse_sse(await resp.read()), "claude")
    fills = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls") == [
        {"index": 0, "function": {"arguments": "{}"}}]]
    assert len(fills) == 1
    assert chunks.index(fills[0]) == len(chunks) - 2, "the fill is the chunk right before the finish chunk"


async def test_anthropic_whole_answer_tool_use_without_input_gets_empty_object(gateway, key, upstream):
    upstream.queue(Behaviour(json={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet",
        "content": [{"type": "tool_use", "id": "toolu_now", "name": "now", "input": {}},
                    {"type": "tool_use", "id": "toolu_x", "name": "now"},
                    {"type": "tool_use", "id": "toolu_w", "name": "weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 40}}))
    done = await gateway.sdk(key).chat.completions.create(model="claude", messages=USER, tools=TOOLS)
    calls = done.choices[0].message.tool_calls
    assert [c.function.arguments for c in calls] == ["{}", "{}", '{"city":"Paris"}']
    assert done.choices[0].finish_reason == "tool_calls"


def _openai_tool_answer(arguments: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "now", "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


@pytest.mark.parametrize("arguments", ["", None, "  "])
async def test_openai_upstream_empty_arguments_become_empty_object(gateway, key, upstream, arguments):
    upstream.queue(Behaviour(json=_openai_tool_answer(arguments)))
    done = await gateway.sdk(key).chat.completions.create(model="gpt", messages=USER, tools=TOOLS)
    assert done.choices[0].message.tool_calls[0].function.arguments == "{}"


async def test_openai_upstream_stream_with_empty_arguments_becomes_empty_object(gateway, key, upstream):
    head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up-model"}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    upstream.queue(Behaviour(sse=sse))
    stream = await gateway.sdk(key).chat.completions.create(model="gpt", messages=USER, tools=TOOLS, stream=True)
    calls = assembled([c async for c in stream])
    assert calls == {0: {"id": "call_1", "name": "now", "arguments": "{}"}}


async def test_calls_with_arguments_and_text_answers_are_untouched(gateway, key, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["Hello", " there"])))
    resp = await gateway.post(key, {"model": "gpt", "messages": USER, "stream": True})
    chunks = check_stream(parse_sse(await resp.read()), "gpt")
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"])
    upstream.queue(Behaviour(json=_openai_tool_answer('{"a":1}')))
    done = await gateway.sdk(key).chat.completions.create(model="gpt", messages=USER, tools=TOOLS)
    assert done.choices[0].message.tool_calls[0].function.arguments == '{"a":1}'
