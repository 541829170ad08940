"""`POST /v1/responses` with the official openai SDK, on every dialect (SPEC section 10.2)."""
from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import check_error
from tests.fakes import Behaviour, fixture_sse, openai_sse
from tests.responses_wire import check_events, check_response, parse_events

ROUTES = ["demo", "gpt", "claude"]   # mock, OpenAI chat and Anthropic targets: all translated


async def post(gateway, key: str | None, body, **headers):
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await gateway.http.post(gateway.base_url + "/responses", data=data,
                                   headers={"content-type": "application/json", **auth, **headers})


@pytest.mark.parametrize("route", ROUTES)
async def test_sdk_create_on_every_dialect(gateway, key, route):
    client = gateway.sdk(key)
    response = await client.responses.create(model=route, input="Hello", instructions="Be brief.",
                                             metadata={"ticket": "42"})
    assert response.status == "completed" and response.model == route and response.id.startswith("resp_")
    assert response.output_text and response.output[-1].type == "message"
    assert response.instructions == "Be brief." and response.metadata == {"ticket": "42"}
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    check_response(response.model_dump(mode="json", exclude_unset=True), route)
    row = (await gateway.rows())[-1]
    assert row["endpoint"] == "responses" and row["status"] == "ok" and row["route"] == route
    assert row["request_id"] == response.id.removeprefix("resp_")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (response.usage.input_tokens,
                                                                response.usage.output_tokens)


@pytest.mark.parametrize("route", ROUTES)
async def test_sdk_stream_helper_on_every_dialect(gateway, key, route):
    """The SDK's stream helper checks every index and identity as it accumulates the response."""
    client = gateway.sdk(key)
    async with client.responses.stream(model=route, input="Hello") as stream:
        texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert texts and final.output_text == "".join(texts)
    assert final.status == "completed" and final.model == route
    assert final.usage.output_tokens > 0
    row = (await gateway.rows())[-1]
    assert row["endpoint"] == "responses" and row["stream"] == 1 and row["status"] == "ok"
    assert row["completion_tokens"] == final.usage.output_tokens


@pytest.mark.parametrize("route", ROUTES)
async def test_wire_stream_keeps_every_rule(gateway, key, route):
    resp = await post(gateway, key, {"model": route, "input": "Hello", "stream": True})
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    raw = await resp.read()
    assert all(block.startswith(("event: ", ": ")) for block in raw.decode().split("\n\n") if block)
    final = check_events(parse_events(raw), model=route)
    assert [i["type"] for i in final["output"]] == ["message"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] > 0


async def test_sdk_create_stream_iterates_typed_events(gateway, key):
    client = gateway.sdk(key)
    stream = await client.responses.create(model="demo", input="Hello", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert kinds.count("response.completed") == 1


REASONING_ROUTES = """
providers:
  demo: {dialect: mock}
routes:
  thinker:
    targets:
      - {provider: demo, model: chat, thinking: native}
  plain:
    targets:
      - {provider: demo, model: chat}
"""


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_comes_back_as_a_reasoning_item_with_a_summary(start_gateway, stream):
    gateway = await start_gateway(REASONING_ROUTES)
    key = (await gateway.create_key())["key"]
    body = {"model": "thinker", "input": "Hello", "reasoning": {"effort": "low"}, "stream": stream}
    resp = await post(gateway, key, body)
    assert resp.status == 200
    if stream:
        events = parse_events(await resp.read())
        final = check_events(events, model="thinker")
        kinds = [n for n, _ in events]
        assert kinds.index("response.reasoning_summary_part.added") < kinds.index(
            "response.reasoning_summary_text.delta") < kinds.index("response.reasoning_summary_text.done")
    else:
        final = check_response(await resp.json(), "thinker")
    reasoning, message = final["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"][0]["text"].startswith("The user asked")
    assert message["type"] == "message" and message["content"][0]["text"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    assert final["reasoning"]["effort"] == "low"
    dropped = await post(gateway, key, {**body, "model": "plain", "stream": False})   # Codex asks whatever the model
    assert dropped.status == 200 and dropped.headers["x-gateway-dropped-params"] == "thinking"
    assert [item["type"] for item in (await dropped.json())["output"]] == ["message"]
    plain = await post(gateway, key, {**body, "model": "plain", "reasoning": {"effort": "none"}})
    assert plain.status == 200


async def test_reasoning_effort_reaches_each_target_in_its_thinking_form(gateway, key, upstream):
    client = gateway.sdk(key)
    await client.responses.create(model="claude", input="Hello", reasoning={"effort": "high"})
    assert upstream.requests[-1]["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    await client.responses.create(model="reasoner", input="Hello", reasoning={"effort": "medium"})
    sent = upstream.requests[-1]
    assert sent["reasoning_effort"] == "medium" and sent["thinking"]["type"] == "enabled"


async def test_request_settings_reach_the_upstream_translated(gateway, key, upstream):
    client = gateway.sdk(key)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    await client.responses.create(
        model="gpt", instructions="Answer in JSON.", temperature=0.5, top_p=0.9, max_output_tokens=77,
        parallel_tool_calls=False, tool_choice={"type": "function", "name": "lookup"},
        tools=[{"type": "function", "name": "lookup", "parameters": schema, "strict": True},
               {"type": "web_search"}],
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        input=[{"role": "developer", "content": "Be exact."},
               {"role": "user", "content": [{"type": "input_text", "text": "Where?"},
                                            {"type": "input_image", "image_url": "https://x.test/a.png",
                                             "detail": "low"}]}])
    sent = upstream.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in JSON."}, {"role": "system", "content": "Be exact."},
        {"role": "user", "content": [{"type": "text", "text": "Where?"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png",
                                                                         "detail": "low"}}]}]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["parallel_tool_calls"]) == \
        (0.5, 0.9, 77, False)
    assert sent["tools"] == [{"type": "function", "function": {"name": "lookup", "parameters": schema,
                                                               "strict": True}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "city", "schema": schema,
                                                                              "strict": True}}
    assert "metadata" not in sent and "input" not in sent and "instructions" not in sent


@pytest.mark.parametrize("stream", [False, True])
async def test_max_output_tokens_ends_incomplete(gateway, key, stream):
    resp = await post(gateway, key, {"model": "demo", "input": "Hello", "max_output_tokens": 3, "stream": stream})
    if stream:
        events = parse_events(await resp.read())
        final = check_events(events, model="demo")
        assert events[-1][0] == "response.incomplete"
    else:
        final = check_response(await resp.json(), "demo")
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["output_tokens"] <= 3


async def test_mid_stream_failure_is_response_failed_and_never_completed(gateway, key, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["Hello", " there", " friend"]), events=True, reset_after=3))
    resp = await post(gateway, key, {"model": "gpt", "input": "Hello", "stream": True})
    assert resp.status == 200
    events = parse_events(await resp.read())
    final = check_events(events, model="gpt", complete=False)
    assert events[-1][0] == "response.failed" and final["status"] == "failed"
    assert final["error"]["code"] == "server_error" and final["error"]["message"]
    assert "upstream-secret-key-123" not in json.dumps(events)
    row = (await gateway.rows())[-1]
    assert row["status"] == "error" and row["endpoint"] == "responses"


async def test_recorded_openai_tool_call_stream_becomes_function_call_items(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("openai/openai-parallel-tool-calls.sse"), chunk_size=41))
    resp = await post(gateway, key, {"model": "gpt", "input": "Weather?", "stream": True,
                                     "tools": [{"type": "function", "name": "get_weather"}]})
    final = check_events(parse_events(await resp.read()), model="gpt")
    calls = [i for i in final["output"] if i["type"] == "function_call"]
    assert len(calls) >= 2 and all(json.loads(c["arguments"]) is not None for c in calls)
    assert len({c["call_id"] for c in calls}) == len(calls)


BAD = [
    ({"input": "x"}, "model", "missing_required_parameter"),
    ({"model": "demo"}, "input", "missing_required_parameter"),
    ({"model": "demo", "input": 3}, "input", "invalid_type"),
    ({"model": "demo", "input": []}, "input", "invalid_value"),
    ({"model": "demo", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
    ({"model": "demo", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
     "input[0].content[0].text", "missing_required_parameter"),
    ({"model": "demo", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id", "missing_required_parameter"),
    ({"model": "demo", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
     "input[0].output", "invalid_type"),
    ({"model": "demo", "input": [{"type": "reasoning", "summary": [{"type": "summary_text"}]}]},
     "input[0].summary[0].text", "missing_required_parameter"),
    ({"model": "demo", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
    ({"model": "demo", "input": "x", "tool_choice": "maybe"}, "tool_choice", "invalid_value"),
    ({"model": "demo", "input": "x", "temperature": 3}, "temperature", "invalid_value"),
    ({"model": "demo", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({"model": "demo", "input": "x", "reasoning": {"effort": "huge"}}, "reasoning.effort", "invalid_value"),
    ({"model": "demo", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}},
     "text.format.schema", "missing_required_parameter"),
    ({"model": "demo", "input": "x", "metadata": {"a": 1}}, "metadata.a", "invalid_type"),
    ({"model": "demo", "input": "x", "store": "yes"}, "store", "invalid_type"),
    ({"model": "demo", "input": "x", "previous_response_id": 7}, "previous_response_id", "invalid_type"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD)
async def test_violations_are_400_naming_the_param(gateway, key, body, param, code):
    resp = await post(gateway, key, body)
    assert resp.status == 400, await resp.text()
    error = check_error(await resp.json(), code)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    row = (await gateway.rows())[-1]
    assert row["endpoint"] == "responses" and row["status"] == "rejected"


async def test_sdk_errors_are_typed(gateway, key):
    client = gateway.sdk(key)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="nope", input="x")
    with pytest.raises(openai.AuthenticationError):
        await gateway.sdk("sk-wrong").responses.create(model="demo", input="x")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="demo", input="x", temperature=9)
    assert caught.value.body["param"] == "temperature"


async def test_reasoning_asked_of_a_route_that_cannot_think_never_reaches_its_upstream(gateway, key, upstream):
    resp = await post(gateway, key, {"model": "gpt", "input": "Hello", "reasoning": {"effort": "high"}})
    assert resp.status == 200 and resp.headers["x-gateway-dropped-params"] == "thinking"
    sent = upstream.requests[-1]
    assert "thinking" not in sent and "reasoning_effort" not in sent and "reasoning" not in sent
