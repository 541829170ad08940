"""Stored responses (SPEC section 10.2 "State"): retrieve, delete, `previous_response_id` across targets and
dialects, ownership, `store: false`, pruning after `settings.responses_days`, on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import openai
import pytest

from gateway.clock import ManualClock
from tests.conftest import BOTH_DBS, check_error
from tests.fakes import Behaviour
from tests.responses_wire import check_events, check_response, parse_events
from tests.test_responses import post
from tests.waits import until

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
OPENAI_CALL = {"id": "c1", "object": "chat.completion", "created": 1, "model": "up-model",
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
               "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}
ANTHROPIC_CALL = {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-sonnet",
                  "content": [{"type": "thinking", "thinking": "Look it up.", "signature": "sig-123"},
                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
                  "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 12}}


@BOTH_DBS
async def test_retrieve_and_delete(gateway, key):
    client = gateway.sdk(key)
    created = await client.responses.create(model="demo", input="Hello", metadata={"run": "1"})
    got = await client.responses.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    raw = await gateway.http.get(f"{gateway.base_url}/responses/{created.id}",
                                 headers={"Authorization": f"Bearer {key}"})
    check_response(await raw.json(), "demo")
    assert raw.headers["x-request-id"]
    await client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(created.id)
    async with client.responses.stream(model="demo", input="Hello") as stream:
        final = await stream.get_final_response()
    assert (await client.responses.retrieve(final.id)).output_text == final.output_text
    assert len(await gateway.rows()) == 2, "GET and DELETE are not booked"


@BOTH_DBS
async def test_a_response_is_only_the_keys_that_made_it(gateway, key):
    mine = await gateway.sdk(key).responses.create(model="demo", input="Hello")
    other = gateway.sdk((await gateway.create_key())["key"])
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await other.responses.create(model="demo", input="And?", previous_response_id=mine.id)
    assert caught.value.body["param"] == "previous_response_id"
    assert (await gateway.sdk(key).responses.retrieve(mine.id)).id == mine.id   # still there for its owner
    row = (await gateway.rows())[-1]
    assert row["status"] == "rejected" and row["error_code"] == "previous_response_not_found"


async def test_unknown_previous_response_is_404_naming_the_param(gateway, key):
    resp = await post(gateway, key, {"model": "demo", "input": "x", "previous_response_id": "resp_" + "0" * 32})
    assert resp.status == 404
    assert check_error(await resp.json(), "previous_response_not_found")["param"] == "previous_response_id"


async def test_store_false_keeps_nothing(gateway, key):
    client = gateway.sdk(key)
    for stream in (False, True):
        resp = await post(gateway, key, {"model": "demo", "input": "Hello", "store": False, "stream": stream})
        body = check_events(parse_events(await resp.read()))["id"] if stream else (await resp.json())["id"]
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(body)
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="demo", input="x", previous_response_id=body)


@pytest.mark.parametrize("route", ["gpt", "claude", "demo"])
@pytest.mark.parametrize("stream", [False, True])
async def test_function_call_round_trip_through_previous_response_id(gateway, key, upstream, route, stream):
    upstream.queue(Behaviour(json=ANTHROPIC_CALL if route == "claude" else OPENAI_CALL))
    client = gateway.sdk(key)
    first = await client.responses.create(model=route, input="Weather in Paris?", tools=TOOLS,
                                          tool_choice="required")
    call = next(i for i in first.output if i.type == "function_call")
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
    turn = [{"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"}]
    if stream:
        async with client.responses.stream(model=route, previous_response_id=first.id, input=turn,
                                           tools=TOOLS) as s:
            final = await s.get_final_response()
    else:
        final = await client.responses.create(model=route, previous_response_id=first.id, input=turn, tools=TOOLS)
    assert final.status == "completed" and final.output_text and final.previous_response_id == first.id
    if route == "demo":
        return   # in-process: nothing to read on the wire
    sent = upstream.requests[-1]["messages"]
    if route == "claude":
        assert sent[0] == {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}
        assert sent[1]["content"][0] == {"type": "thinking", "thinking": "Look it up.", "signature": "sig-123"}
        assert sent[1]["content"][1] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                         "input": {"city": "Paris"}}
        assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C, sunny"}
    else:
        assert sent[0] == {"role": "user", "content": "Weather in Paris?"}
        assert sent[1]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]
        assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}


@BOTH_DBS
async def test_a_conversation_continues_after_switching_targets(gateway, key, upstream):
    """demo (mock) -> gpt (OpenAI chat) -> claude (Anthropic): each turn sees every turn before it."""
    client = gateway.sdk(key)
    one = await client.responses.create(model="demo", input="My name is Ada.", instructions="Be kind.")
    two = await client.responses.create(model="gpt", input="What is my name?", previous_response_id=one.id)
    sent = upstream.requests[-1]["messages"]
    assert sent == [{"role": "user", "content": "My name is Ada."},
                    {"role": "assistant", "content": one.output_text},
                    {"role": "user", "content": "What is my name?"}], "instructions are not carried over"
    async with client.responses.stream(model="claude", input="Thanks.", previous_response_id=two.id,
                                       instructions="Be brief.") as s:
        three = await s.get_final_response()
    sent = upstream.requests[-1]
    assert sent["system"] == "Be brief."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert sent["messages"][3]["content"][0]["text"] == two.output_text == "Hello from upstream"
    four = await client.responses.create(model="demo", input="Bye.", previous_response_id=three.id)
    assert four.previous_response_id == three.id
    await client.responses.delete(two.id)   # each stored response holds its whole conversation
    five = await client.responses.create(model="gpt", input="Again?", previous_response_id=three.id)
    assert five.status == "completed" and len(upstream.requests[-1]["messages"]) == 7


PRUNED = """
settings:
  responses_days: 2
providers:
  demo: {dialect: mock}
routes:
  demo:
    targets:
      - {provider: demo, model: chat}
"""


@BOTH_DBS
async def test_responses_older_than_responses_days_are_pruned(start_gateway):
    clock = ManualClock()
    gateway = await start_gateway(PRUNED, clock=clock, prune_interval=0.05)
    client = gateway.sdk((await gateway.create_key())["key"])
    old = await client.responses.create(model="demo", input="Hello")
    clock.advance(86400)
    young = await client.responses.create(model="demo", input="Hello")
    clock.advance(86400 + 60)   # `old` is 2 days and a minute old, `young` a day and a minute

    async def pruned() -> bool:
        try:
            await client.responses.retrieve(old.id)
        except openai.NotFoundError:
            return True
        return False
    await until(pruned, within=5)
    assert (await client.responses.retrieve(young.id)).id == young.id
