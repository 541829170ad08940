"""`POST /v1/messages` with the official anthropic SDK, on every dialect (SPEC section 10.1)."""
from __future__ import annotations

import json

import anthropic
import pytest

from tests.fakes import COUNTED, Behaviour, Cache, fixture_sse, openai_sse
from tests.messages_wire import check_events, parse_events
from tests.waits import until

ROUTES = ["claude", "gpt", "demo"]   # Anthropic (pass-through), OpenAI (translated), mock (translated)
HELLO = [{"role": "user", "content": "Hello"}]


def sdk(gateway, key: str, **kwargs) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0, **kwargs)


async def post(gateway, key: str | None, body, path: str = "/v1/messages", **headers):
    auth = {"x-api-key": key} if key else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await gateway.http.post(gateway.url + path, data=data,
                                   headers={"content-type": "application/json", **auth, **headers})


@pytest.mark.parametrize("route", ROUTES)
async def test_sdk_create_on_every_dialect(gateway, key, route):
    client = sdk(gateway, key)
    message = await client.messages.create(model=route, max_tokens=256, messages=HELLO)
    assert message.type == "message" and message.role == "assistant" and message.model == route
    assert message.id.startswith("msg_")
    assert message.content and message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    row = (await gateway.rows())[-1]
    assert row["endpoint"] == "messages" and row["status"] == "ok" and row["route"] == route
    assert row["completion_tokens"] == message.usage.output_tokens


@pytest.mark.parametrize("route", ROUTES)
async def test_sdk_stream_to_final_message_on_every_dialect(gateway, key, route):
    client = sdk(gateway, key)
    async with client.messages.stream(model=route, max_tokens=256, messages=HELLO) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.model == route and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    row = (await gateway.rows())[-1]
    assert row["endpoint"] == "messages" and row["stream"] == 1 and row["status"] == "ok"
    assert row["completion_tokens"] == final.usage.output_tokens


@pytest.mark.parametrize("route", ROUTES)
async def test_wire_stream_keeps_every_rule(gateway, key, route):
    resp = await post(gateway, key, {"model": route, "max_tokens": 256, "messages": HELLO, "stream": True})
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    blocks = check_events(parse_events(await resp.read()), model=route)
    assert [b["type"] for b in blocks] == ["text"]


ANTHROPIC_RECORDINGS = ["docs-thinking", "docs-tool-use", "text-ping", "text-then-tool-use-pings",
                        "thinking-signature", "tool-use-input-json-delta"]


@pytest.mark.parametrize("name", ANTHROPIC_RECORDINGS)
async def test_recorded_anthropic_streams_arrive_as_anthropic_sent_them(gateway, key, upstream, name):
    """Pass-through: every event of the recording, in order, the same but for our id and the route's name."""
    raw = fixture_sse(f"anthropic/{name}.sse")
    upstream.queue(Behaviour(sse=raw, chunk_size=37))
    resp = await post(gateway, key, {"model": "claude", "max_tokens": 4096, "messages": HELLO, "stream": True})
    got = parse_events(await resp.read())
    check_events(got, model="claude")
    sent = parse_events(raw)
    assert len(got) == len(sent)
    for (name_, data), (_, ours) in zip(sent, got, strict=True):   # the gateway replaces the id and model
        if name_ == "message_start":
            data["message"]["id"] = ours["message"]["id"]
            data["message"]["model"] = "claude"
        if name_ in ("message_start", "message_delta"):   # a recording cut short of usage: ours, for the SDK
            where = data.get("message", data)
            where.setdefault("usage", (ours.get("message", ours))["usage"])
    assert got == sent


OPENAI_RECORDINGS = ["deepseek-reasoning-content", "deepseek-reasoning-tool-call", "groq-reasoning-field",
                     "mistral-text-usage-in-last-chunk", "mistral-tool-call-no-index", "openai-finish-length",
                     "openai-parallel-tool-calls", "openai-refusal", "openai-text-obfuscation",
                     "openai-text-usage-chunk", "azure-prompt-filter-results", "openai-multiple-choices-n3"]


@pytest.mark.parametrize("name", OPENAI_RECORDINGS)
async def test_recorded_openai_streams_become_valid_anthropic_streams(gateway, key, upstream, name):
    raw = fixture_sse(f"openai/{name}.sse")
    upstream.queue(Behaviour(sse=raw, chunk_size=53), Behaviour(sse=raw))
    resp = await post(gateway, key, {"model": "gpt", "max_tokens": 4096, "messages": HELLO, "stream": True})
    events = parse_events(await resp.read())
    blocks = check_events(events, model="gpt")
    # the same recording through chat completions says the same text and calls
    chat = await gateway.post(key, {"model": "gpt", "messages": HELLO, "stream": True})
    chunks = [json.loads(line[6:]) for line in (await chat.read()).decode().split("\n")
              if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    text = "".join(d.get("content") or "" for d in deltas) + "".join(d.get("refusal") or "" for d in deltas)
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert "".join(b.get("text", "") for b in blocks) == text
    assert "".join(b.get("thinking", "") for b in blocks) == reasoning
    names = [c["function"]["name"] for d in deltas for c in d.get("tool_calls") or ()
             if c.get("function", {}).get("name")]
    assert [b["name"] for b in blocks if b["type"] == "tool_use"] == names
    finish = next(c["choices"][0]["finish_reason"] for c in reversed(chunks)
                  if c.get("choices") and c["choices"][0].get("finish_reason"))
    stop = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
            "content_filter": "refusal"}[finish]
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == stop


TOOLS = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def _openai_tool_call_sse() -> bytes:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model"}
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]},
              {**head, "choices": [{"index": 0, "delta": {"tool_calls": [
                  {"index": 0, "function": {"arguments": '{"city": '}}]}}]},
              {**head, "choices": [{"index": 0, "delta": {"tool_calls": [
                  {"index": 0, "function": {"arguments": '"Paris"}'}}]}}]},
              {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
              {**head, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


ANTHROPIC_TOOL_ANSWER = {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-sonnet",
                         "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                      "input": {"city": "Paris"}}],
                         "stop_reason": "tool_use", "stop_sequence": None,
                         "usage": {"input_tokens": 30, "output_tokens": 12}}


@pytest.mark.parametrize("route", ["claude", "gpt"])
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_round_trip(gateway, key, upstream, route, stream):
    """tool_use -> tool_result -> final answer, with the SDK, on an Anthropic and an OpenAI-dialect target."""
    if route == "claude":
        first = Behaviour(sse=fixture_sse("anthropic/docs-tool-use.sse")) if stream else \
            Behaviour(json=ANTHROPIC_TOOL_ANSWER)
    else:
        first = Behaviour(sse=_openai_tool_call_sse()) if stream else Behaviour(json={
            "id": "c1", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}})
    upstream.queue(first)
    client = sdk(gateway, key)
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        async with client.messages.stream(model=route, max_tokens=1024, tools=TOOLS, messages=asked) as s:
            message = await s.get_final_message()
    else:
        message = await client.messages.create(model=route, max_tokens=1024, tools=TOOLS, messages=asked)
    assert message.stop_reason == "tool_use"
    use = next(b for b in message.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict) and use.input
    turn = [*asked, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}]}]
    final = await client.messages.create(model=route, max_tokens=1024, tools=TOOLS, messages=turn)
    assert final.stop_reason == "end_turn" and final.content[0].text
    sent = upstream.requests[-1]
    if route == "claude":
        assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": use.id,
                                                      "content": "18 C, sunny"}
    else:
        call = sent["messages"][1]["tool_calls"][0]
        assert call["id"] == use.id and json.loads(call["function"]["arguments"]) == use.input
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": use.id, "content": "18 C, sunny"}
        assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]


async def test_thinking_signature_goes_back_untouched_on_the_next_turn(gateway, key, upstream):
    upstream.queue(Behaviour(sse=fixture_sse("anthropic/thinking-signature.sse")))
    client = sdk(gateway, key)
    thinking = {"type": "enabled", "budget_tokens": 2048}
    async with client.messages.stream(model="claude", max_tokens=4096, thinking=thinking, messages=HELLO) as s:
        first = await s.get_final_message()
    block = next(b for b in first.content if b.type == "thinking")
    assert block.signature and block.thinking
    recorded = [d for n, d in parse_events(fixture_sse("anthropic/thinking-signature.sse"))
                if n == "content_block_delta" and d["delta"]["type"] == "signature_delta"]
    assert block.signature == recorded[0]["delta"]["signature"]
    turn = [*HELLO, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": "And then?"}]
    await client.messages.create(model="claude", max_tokens=4096, thinking=thinking, messages=turn)
    sent = upstream.requests[-1]["messages"][1]["content"]
    assert next(b for b in sent if b["type"] == "thinking")["signature"] == block.signature


async def test_pass_through_keeps_the_body_as_sent(gateway, key, upstream):
    """cache_control, signatures, unknown fields and anthropic-beta reach an Anthropic target as sent."""
    body = {"model": "claude", "max_tokens": 300, "system": [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Ünïcode ✓ text"}}]},
                     {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm",
                                                        "signature": "EqQBCgIYAhIM+/==sig"}]},
                     {"role": "user", "content": "go on"}],
        "top_k": 5, "metadata": {"user_id": "u-1"}, "service_tier": "auto", "some_future_field": {"a": [1, 2.5, None]},
        "temperature": 0.7}
    resp = await post(gateway, key, body, **{"anthropic-beta": "prompt-caching-2024-07-31",
                                             "anthropic-version": "2023-06-01"})
    assert resp.status == 200, await resp.text()
    sent = upstream.requests[-1]
    assert sent == {**body, "model": "claude-sonnet"}
    headers = {k.lower(): v for k, v in upstream.headers[-1].items()}
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert headers["x-api-key"] == "sk-ant-upstream-secret"   # ours, never the client's key
    assert key not in json.dumps(upstream.headers[-1])


async def test_translation_to_openai_drops_what_it_cannot_say(gateway, key, upstream):
    body = {"model": "gpt", "max_tokens": 300, "system": "Be brief.", "top_k": 3, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-9"}, "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "tools": [*TOOLS, {"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Look", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]}]}
    resp = await post(gateway, key, body)
    assert resp.status == 200, await resp.text()
    sent = upstream.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "Look"}, {
        "type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]
    assert sent["stop"] == ["END"] and sent["user"] == "u-9" and sent["max_tokens"] == 300
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert "top_k" not in sent and "metadata" not in sent and "system" not in sent


async def test_sdk_errors_are_typed(start_gateway, upstream):
    gateway = await start_gateway()
    key = (await gateway.create_key(rpm_limit=2, models=["claude", "demo"]))["key"]
    client = sdk(gateway, key)
    with pytest.raises(anthropic.AuthenticationError):
        await sdk(gateway, "sk-wrong").messages.create(model="demo", max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(model="demo", max_tokens=0, messages=HELLO)
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="no-such-model", max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.PermissionDeniedError):
        await client.messages.create(model="gpt", max_tokens=5, messages=HELLO)
    upstream.queue(*[Behaviour(status=529, json={"type": "error", "error": {"type": "overloaded_error",
                                                                             "message": "Overloaded"}})] * 8)
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(model="claude", max_tokens=5, messages=HELLO)
    await client.messages.create(model="demo", max_tokens=5, messages=HELLO)   # the key's second request this minute
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model="demo", max_tokens=5, messages=HELLO)


async def test_error_envelope_is_anthropics(gateway, key):
    resp = await post(gateway, key, {"model": "demo", "messages": HELLO})
    assert resp.status == 400
    body = await resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    resp = await post(gateway, None, {"model": "demo", "max_tokens": 5, "messages": HELLO})
    assert resp.status == 401 and (await resp.json())["error"]["type"] == "authentication_error"
    resp = await gateway.http.post(gateway.url + "/v1/messages", json={"model": "demo", "max_tokens": 5,
                                                                        "messages": HELLO},
                                   headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200, "Authorization: Bearer works as well as x-api-key"


async def test_mid_stream_failure_is_one_error_event_and_no_message_stop(gateway, key, upstream):
    head = fixture_sse("anthropic/text-ping.sse").split(b"\n\n")[:4]   # message_start, a block started, ping, a delta
    raw = b"\n\n".join(head) + b"\n\n" + fixture_sse("anthropic/error-midstream-fragment.sse")
    upstream.queue(Behaviour(sse=raw, events=True, delay=0.02))
    resp = await post(gateway, key, {"model": "claude", "max_tokens": 64, "messages": HELLO, "stream": True})
    events = parse_events(await resp.read())
    check_events(events, complete=False)
    assert [n for n, _ in events].count("error") == 1
    assert events[-1][1]["error"]["type"] in ("overloaded_error", "api_error")
    row = (await gateway.rows())[-1]
    assert row["status"] == "error" and row["endpoint"] == "messages"


async def test_openai_stream_breaking_mid_way_ends_with_an_error_event(gateway, key, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["a", "b", "c", "d"]), events=True, reset_after=3))
    resp = await post(gateway, key, {"model": "gpt", "max_tokens": 64, "messages": HELLO, "stream": True})
    events = parse_events(await resp.read())
    check_events(events, complete=False)


async def test_count_tokens(gateway, key, upstream):
    body = {"model": "claude", "messages": HELLO, "system": "Be brief."}
    resp = await post(gateway, key, body, path="/v1/messages/count_tokens")
    assert resp.status == 200 and await resp.json() == {"input_tokens": COUNTED}
    assert upstream.requests[-1] == {**body, "model": "claude-sonnet"}
    resp = await post(gateway, key, {**body, "model": "demo"}, path="/v1/messages/count_tokens")
    estimate = (await resp.json())["input_tokens"]
    assert resp.status == 200 and 0 < estimate < 100
    resp = await post(gateway, key, {"model": "demo", "messages": "nope"}, path="/v1/messages/count_tokens")
    assert resp.status == 400 and (await resp.json())["type"] == "error"
    assert await gateway.rows() == [], "counting is never booked"
    client = sdk(gateway, key)
    counted = await client.messages.count_tokens(model="claude", messages=HELLO)
    assert counted.input_tokens == COUNTED


@pytest.mark.parametrize("route", ["claude", "gpt"])
async def test_keepalives_are_pings_and_the_sdk_reads_through_them(start_gateway, upstream, route):
    """While the upstream is silent (before its first event, and mid-stream) clients get Anthropic's `ping`."""
    gateway = await start_gateway(keepalive_interval=0.05)
    key = (await gateway.create_key())["key"]
    raw = fixture_sse("anthropic/text-ping.sse") if route == "claude" else openai_sse(["Hel", "lo"])
    for _ in range(2):
        upstream.queue(Behaviour(sse=raw, events=True, hang=0.2, pause_after=2, pause=0.2))
    resp = await post(gateway, key, {"model": route, "max_tokens": 64, "messages": HELLO, "stream": True})
    events = parse_events(await resp.read())
    check_events(events, model=route)
    first = next(i for i, (n, _) in enumerate(events) if n == "message_start")
    assert any(n == "ping" for n, _ in events[:first]), "pings while the upstream said nothing yet"
    assert sum(n == "ping" for n, _ in events[first:]) >= 2, "and while it paused mid-stream"
    async with sdk(gateway, key).messages.stream(model=route, max_tokens=64, messages=HELLO) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text


async def test_thinking_reaches_an_openai_target_in_its_form_and_comes_back_as_thinking(start_gateway, upstream):
    routes = f"""
providers:
  up: {{dialect: openai, base_url: "{upstream.url}/v1", api_key: upstream-secret-key-123}}
routes:
  r:
    targets: [{{provider: up, model: m, thinking: {{params: {{reasoning_effort: high}}}}}}]
"""
    gateway = await start_gateway(routes)
    key = (await gateway.create_key())["key"]
    upstream.queue(Behaviour(sse=fixture_sse("openai/deepseek-reasoning-content.sse")))
    client = sdk(gateway, key)
    async with client.messages.stream(model="r", max_tokens=4096, messages=HELLO,
                                      thinking={"type": "enabled", "budget_tokens": 2048}) as stream:
        final = await stream.get_final_message()
    sent = upstream.requests[-1]
    assert sent["reasoning_effort"] == "high" and "thinking" not in sent
    assert [b.type for b in final.content][:2] == ["thinking", "text"]
    assert final.content[0].thinking and final.content[1].text


@pytest.mark.parametrize("route", ["claude", "gpt"])
@pytest.mark.parametrize("stream", [False, True])
async def test_cache_usage_comes_back_as_anthropic_counts_it_and_is_booked(gateway, key, upstream, route, stream):
    """SPEC 11: the answer's usage is Anthropic's split (input apart from cache reads and writes); the ledger's
    prompt_tokens counts all three, cached_tokens the reads, cache_write_tokens the writes."""
    write = 50 if route == "claude" else 0   # OpenAI reports no cache writes
    upstream.cache = Cache(fresh=100, read=900, write=write, output=7)
    client = sdk(gateway, key)
    if stream:
        async with client.messages.stream(model=route, max_tokens=64, messages=HELLO) as s:
            usage = (await s.get_final_message()).usage
    else:
        usage = (await client.messages.create(model=route, max_tokens=64, messages=HELLO)).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (100, 900, 7)
    assert (usage.cache_creation_input_tokens or 0) == write
    row = (await gateway.rows())[-1]
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"], row["completion_tokens"]) == \
        (1000 + write, 900, write, 7)
    price_in, price_out = (3.0, 15.0) if route == "claude" else (1.0, 2.0)
    assert row["cost_usd"] == pytest.approx(((1000 + write) * price_in + 7 * price_out) / 1e6)


async def test_a_client_that_leaves_mid_stream_is_booked_cancelled(gateway, key, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["a"] * 50), events=True, delay=0.05))
    resp = await post(gateway, key, {"model": "gpt", "max_tokens": 64, "messages": HELLO, "stream": True})
    await resp.content.readline()
    resp.close()

    async def booked() -> list[dict]:
        return await gateway.rows("SELECT status, endpoint FROM requests WHERE status = 'cancelled'")

    await until(booked, within=5, what="the cancelled stream's row")
    assert (await booked())[0]["endpoint"] == "messages"


async def test_a_non_stream_pass_through_answer_keeps_what_anthropic_said(gateway, key, upstream):
    answer = {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-sonnet",
              "content": [{"type": "thinking", "thinking": "hm", "signature": "c2ln"},
                          {"type": "text", "text": "Hi", "citations": None},
                          {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": "x"}},
                          {"type": "text"},                      # malformed: dropped, never relayed broken
                          "junk"],
              "stop_reason": "pause_turn", "stop_sequence": None, "container": {"id": "c1", "expires_at": "t"},
              "debug": {"auth": "Bearer sk-ant-api03-0123456789abcdef"},   # a key-shaped echo: never relayed
              "usage": {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 0,
                        "service_tier": "standard", "cache_creation": {"ephemeral_5m_input_tokens": 0},
                        "secret": "sk-ant-api03-LEAK"}}
    upstream.queue(Behaviour(json=answer))
    resp = await post(gateway, key, {"model": "claude", "max_tokens": 64, "messages": HELLO})
    body = await resp.json()
    assert body["content"] == answer["content"][:3]
    assert body["stop_reason"] == "pause_turn" and body["container"] == answer["container"]
    assert "debug" not in body
    assert body["id"].startswith("msg_") and body["id"] != "msg_up" and body["model"] == "claude"
    assert body["usage"] == {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 0,
                             "service_tier": "standard", "cache_creation": {"ephemeral_5m_input_tokens": 0}}


async def test_thinking_on_a_route_that_cannot_think_is_dropped_and_said(gateway, key, upstream):
    """Claude Code asks for thinking by default: a route without a thinking target answers without it (chat
    completions keep their 400, SPEC 5)."""
    body = {"model": "gpt", "max_tokens": 4096, "messages": HELLO,
            "thinking": {"type": "enabled", "budget_tokens": 2048}}
    resp = await post(gateway, key, body)
    assert resp.status == 200 and resp.headers["x-gateway-dropped-params"] == "thinking", await resp.text()
    assert "thinking" not in upstream.requests[-1]
    chat = await gateway.post(key, {"model": "gpt", "messages": HELLO, "thinking": body["thinking"]})
    assert chat.status == 400 and (await chat.json())["error"]["code"] == "thinking_not_supported"


RECORDED = {"claude": [f"anthropic/{n}.sse" for n in ANTHROPIC_RECORDINGS],
            "gpt": [f"openai/{n}.sse" for n in OPENAI_RECORDINGS if "error" not in n]}


@pytest.mark.parametrize("route", ["claude", "gpt", "demo"])
async def test_every_answer_and_event_validates_against_the_sdk_types(gateway, key, upstream, route):
    """Strictly (pydantic validation, not the SDK's lenient construction): the answer as `Message`, every event
    as `RawMessageStreamEvent`, for each recorded upstream stream of the route's dialect."""
    from pydantic import TypeAdapter

    events_type = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    resp = await post(gateway, key, {"model": route, "max_tokens": 256, "messages": HELLO})
    anthropic.types.Message.model_validate(await resp.json(), strict=False)
    for name in RECORDED.get(route, ["mock"]):
        if name != "mock":
            upstream.queue(Behaviour(sse=fixture_sse(name)))
        resp = await post(gateway, key, {"model": route, "max_tokens": 4096, "messages": HELLO, "stream": True})
        for kind, data in parse_events(await resp.read()):
            if kind != "ping":
                events_type.validate_python(data)
