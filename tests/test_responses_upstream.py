"""A target with `dialect: openai-responses` serving chat completions and messages (SPEC 10.2, last bullet).

A real gateway, the real fake upstream answering `POST /v1/responses`, the official openai and
anthropic SDKs; answers checked against the chat schemas and Anthropic's event rules, recorded
Responses streams relayed through both fronts, usage booked from the Responses usage.
"""
from __future__ import annotations

import json

import anthropic
import pytest

from tests.conftest import COMPLETION_SCHEMA, check_stream, joined, parse_sse
from tests.fakes import Behaviour, fixture_sse
from tests.fakes_responses import responses_sse
from tests.messages_wire import check_events, parse_events

HELLO = [{"role": "user", "content": "Hello"}]
RECORDINGS = {   # name: (content, reasoning, tool call names, finish, prompt, completion, cached)
    "text-two-messages": ("Got it\n\nHere are a few **AI", "", [], "stop", 7112, 463, 3072),
    "reasoning-summary-function-call": (
        "", "**Calculating step-by-step using calculator**\n\nI'll compute 12 plus 7, then multiply the result by 3,"
            " and finally multiply that by 10, reporting the final product.", ["calculator"], "tool_calls",
        134, 28, 0),
    "incomplete-max-output-tokens": ("Hello,", "", [], "length", 0, 0, 0),
}


def routes(url: str) -> str:
    return f"""
providers:
  resp: {{dialect: openai-responses, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
routes:
  rgpt:
    retries: 1
    timeout: 5
    targets:
      - {{provider: resp, model: gpt-up, price: {{input: 1.0, output: 2.0}}, thinking: native}}
"""


@pytest.fixture
async def gw(start_gateway, upstream):
    return await start_gateway(routes(upstream.url))


@pytest.fixture
async def gw_key(gw) -> str:
    return (await gw.create_key())["key"]


async def chat_stream(gw, key: str, **extra) -> list[dict]:
    resp = await gw.post(key, {"model": "rgpt", "messages": HELLO, "stream": True,
                               "stream_options": {"include_usage": True}, **extra})
    assert resp.status == 200, await resp.text()
    return check_stream(parse_sse(await resp.read()), "rgpt", include_usage=True)


async def test_chat_completion_through_the_sdk(gw, gw_key, upstream):
    answer = await gw.sdk(gw_key).chat.completions.create(model="rgpt", messages=[
        {"role": "system", "content": "Be brief."}, *HELLO], max_tokens=50)
    body = answer.model_dump(exclude_unset=True)
    assert not [e.message for e in COMPLETION_SCHEMA.iter_errors(body)]
    assert answer.model == "rgpt" and answer.choices[0].message.content == "Hello from upstream"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, 7)
    sent, headers = upstream.requests[-1], upstream.headers[-1]
    assert sent["model"] == "gpt-up" and sent["instructions"] == "Be brief." and sent["max_output_tokens"] == 50
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}]
    assert sent["store"] is False and "messages" not in sent
    assert headers["Authorization"] == "Bearer upstream-secret-key-123"
    row = (await gw.rows())[-1]
    assert (row["status"], row["endpoint"]) == ("ok", "chat.completions")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 7)
    assert row["cost_usd"] == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)


async def test_chat_stream_through_the_sdk(gw, gw_key, upstream):
    stream = await gw.sdk(gw_key).chat.completions.create(model="rgpt", messages=HELLO, stream=True,
                                                          stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Got it\n\nHere are a few **AI"
    assert chunks[-1].usage.prompt_tokens == 7112 and chunks[-1].usage.completion_tokens == 463
    assert upstream.requests[-1]["stream"] is True and "stream_options" not in upstream.requests[-1]


@pytest.mark.parametrize("name", sorted(RECORDINGS))
async def test_recorded_responses_streams_through_chat_completions(gw, gw_key, upstream, name):
    content, reasoning, calls, finish, prompt, completion, cached = RECORDINGS[name]
    upstream.queue(Behaviour(sse=fixture_sse(f"openai-responses/{name}.sse"), chunk_size=37))
    chunks = await chat_stream(gw, gw_key)
    assert joined(chunks, "content") == content and joined(chunks, "reasoning_content") == reasoning
    names = [c["function"]["name"] for ch in chunks if ch["choices"]
             for c in ch["choices"][0]["delta"].get("tool_calls") or () if c.get("function", {}).get("name")]
    assert names == calls
    if calls:
        arguments = "".join(c["function"].get("arguments") or "" for ch in chunks if ch["choices"]
                            for c in ch["choices"][0]["delta"].get("tool_calls") or ())
        assert json.loads(arguments) == {"a": 12, "b": 7, "op": "add"}
    assert next(c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]) \
        == finish
    usage = chunks[-1]["usage"]
    if prompt or completion:   # the recording's own counts; one of zeros leaves the gateway's estimate
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, completion)
    row = (await gw.rows())[-1]
    assert (row["status"], row["stream"], row["prompt_tokens"], row["completion_tokens"]) \
        == ("ok", 1, usage["prompt_tokens"], usage["completion_tokens"])
    if prompt:
        assert row["cached_tokens"] == cached


@pytest.mark.parametrize("name", sorted(RECORDINGS))
async def test_recorded_responses_streams_through_messages(gw, gw_key, upstream, name):
    content, reasoning, calls, finish, *_ = RECORDINGS[name]
    upstream.queue(Behaviour(sse=fixture_sse(f"openai-responses/{name}.sse"), chunk_size=53))
    resp = await gw.http.post(f"{gw.url}/v1/messages", json={"model": "rgpt", "max_tokens": 4096, "messages": HELLO,
                                                             "stream": True}, headers={"x-api-key": gw_key})
    assert resp.status == 200
    events = parse_events(await resp.read())
    blocks = check_events(events, model="rgpt")
    assert "".join(b.get("text", "") for b in blocks) == content
    assert "".join(b.get("thinking", "") for b in blocks) == reasoning
    assert [b["name"] for b in blocks if b["type"] == "tool_use"] == calls
    stop = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[finish]
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == stop
    assert (await gw.rows())[-1]["endpoint"] == "messages"


async def test_messages_through_the_anthropic_sdk(gw, gw_key, upstream):
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=gw_key, max_retries=0)
    message = await client.messages.create(model="rgpt", max_tokens=100, messages=HELLO, system="Be brief.")
    assert message.model == "rgpt" and message.content[0].text == "Hello from upstream"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 7
    assert upstream.requests[-1]["instructions"] == "Be brief." and upstream.requests[-1]["max_output_tokens"] == 100
    async with client.messages.stream(model="rgpt", max_tokens=100, messages=HELLO) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Got it\n\nHere are a few **AI" and final.usage.output_tokens == 463
    row = (await gw.rows())[-1]
    assert (row["endpoint"], row["completion_tokens"], row["cached_tokens"]) == ("messages", 463, 3072)


async def test_tool_round_trip_from_messages_reaches_responses_as_items(gw, gw_key, upstream):
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=gw_key, max_retries=0)
    await client.messages.create(model="rgpt", max_tokens=100, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}],
        tools=[{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    sent = upstream.requests[-1]
    assert sent["input"][1:] == [
        {"type": "function_call", "call_id": "toolu_1", "name": "weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}]
    assert sent["tools"][0]["name"] == "weather" and sent["tools"][0]["strict"] is False


async def test_thinking_reaches_responses_as_reasoning_effort(gw, gw_key, upstream):
    await chat_stream(gw, gw_key, max_tokens=10, thinking={"type": "enabled", "budget_tokens": 4000})
    sent = upstream.requests[-1]
    assert sent["reasoning"] == {"effort": "medium", "summary": "auto"} and "thinking" not in sent
    assert sent["max_output_tokens"] == 5024 and sent["include"] == ["reasoning.encrypted_content"]


async def test_rate_limited_stream_is_retried(gw, gw_key, upstream):
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "rate_limit_exceeded", "message": "Rate limit reached for gpt-up"}}}
    upstream.queue(Behaviour(sse=f"event: response.failed\ndata: {json.dumps(failed)}\n\n".encode()),
                   Behaviour(sse=responses_sse(["second", " try"])))
    chunks = await chat_stream(gw, gw_key)
    assert joined(chunks, "content") == "second try" and len(upstream.requests) == 2
    assert (await gw.rows())[-1]["attempts"] == 2


async def test_recorded_error_stream_is_an_error_not_an_answer(gw, gw_key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("openai-responses/error-then-failed.sse")))
    resp = await gw.post(gw_key, {"model": "rgpt", "messages": HELLO, "stream": True})
    raw = await resp.read()
    assert b"[DONE]" not in raw and b"exceeded your current quota" in raw
    assert len(upstream.requests) == 1      # a quota error is not retried
    assert (await gw.rows())[-1]["status"] == "error"
