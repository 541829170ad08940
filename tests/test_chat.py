"""End to end through real HTTP: the official SDK against the gateway against a fake upstream."""
from __future__ import annotations

import openai
import pytest

from tests.conftest import COMPLETION_SCHEMA, MODELS_SCHEMA, check_error, check_stream, joined, parse_sse
from tests.fakes import Behaviour, fixture_sse, openai_sse


async def test_sdk_non_stream_roundtrip(gateway, key, upstream):
    client = gateway.sdk(key)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-alias", messages=[{"role": "user", "content": "hi"}], temperature=0.5)
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello from upstream"
    assert answer.model == "gpt"                         # the canonical route name, not the alias or upstream's
    assert answer.usage.prompt_tokens == 11 and answer.usage.completion_tokens == 7
    assert not list(COMPLETION_SCHEMA.iter_errors(answer.model_dump(exclude_unset=True)))
    assert raw.headers["x-gateway-provider"] == "up" and raw.headers["x-gateway-model"] == "up-model"
    assert raw.headers["x-gateway-attempts"] == "1" and raw.headers["x-request-id"]
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"
    sent = upstream.requests[-1]
    assert sent["model"] == "up-model" and sent["temperature"] == 0.5
    assert upstream.headers[-1]["Authorization"] == "Bearer upstream-secret-key-123"


async def test_raw_body_validates_against_official_schema(gateway, key):
    resp = await gateway.post(key, {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    body = await resp.json()
    assert resp.status == 200
    errors = [e.message for e in COMPLETION_SCHEMA.iter_errors(body)]
    assert not errors, errors
    assert body["choices"][0]["message"]["refusal"] is None and body["choices"][0]["logprobs"] is None


async def test_sdk_stream_with_usage(gateway, key, upstream):
    client = gateway.sdk(key)
    stream = await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from upstream"
    assert chunks[-1].usage.total_tokens == 14 and chunks[-1].choices == []
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_asks_upstream_anyway(gateway, key, upstream):
    resp = await gateway.post(key, {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-ratelimit-limit-requests"] == "100"
    chunks = check_stream(parse_sse(await resp.read()), "gpt", include_usage=False)
    assert joined(chunks, "content") == "Hello from upstream"
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}
    rows = await gateway.rows()
    assert rows[-1]["prompt_tokens"] == 11 and rows[-1]["completion_tokens"] == 3
    assert rows[-1]["usage_source"] == "upstream" and rows[-1]["stream"] == 1


@pytest.mark.parametrize("name", ["openai-text-usage-chunk.sse", "openai-finish-length.sse",
                                  "openai-parallel-tool-calls.sse", "openai-refusal.sse",
                                  "openai-text-obfuscation.sse", "azure-prompt-filter-results.sse",
                                  "deepseek-reasoning-content.sse", "deepseek-reasoning-tool-call.sse",
                                  "groq-reasoning-field.sse", "mistral-text-usage-in-last-chunk.sse",
                                  "mistral-tool-call-no-index.sse"])
@pytest.mark.parametrize("include_usage", [True, False])
async def test_recorded_streams_come_out_clean(gateway, key, upstream, name, include_usage):
    upstream.queue(Behaviour(sse=fixture_sse(f"openai/{name}"), chunk_size=37))
    body = {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    resp = await gateway.post(key, body)
    assert resp.status == 200
    chunks = check_stream(parse_sse(await resp.read()), "gpt", include_usage=include_usage)
    if "tool" in name:
        calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
        assert calls and all("index" in tc for tc in calls)
        assert chunks[-1 if not include_usage else -2]["choices"][0]["finish_reason"] == "tool_calls"
    if "reasoning" in name:
        assert joined(chunks, "reasoning_content")
        assert all("reasoning" not in c["choices"][0]["delta"] for c in chunks if c["choices"])


async def test_think_tags_move_to_reasoning(gateway, key, upstream):
    upstream.queue(Behaviour(sse=openai_sse(["<thi", "nk>pon", "der</th", "ink>\n\nAns", "wer"]), chunk_size=5))
    resp = await gateway.post(key, {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    chunks = check_stream(parse_sse(await resp.read()), "gpt")
    assert joined(chunks, "reasoning_content") == "ponder"
    assert joined(chunks, "content") == "Answer"


async def test_models_lists_routes_the_key_may_use(gateway):
    key = (await gateway.create_key(models=["gpt", "demo"]))["key"]
    models = await gateway.sdk(key).models.list()
    assert sorted(m.id for m in models.data) == ["demo", "gpt"]
    async with gateway.http.get(f"{gateway.base_url}/models", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert not list(MODELS_SCHEMA.iter_errors(await resp.json()))


async def test_health(gateway):
    async with gateway.http.get(f"{gateway.url}/health") as resp:
        assert resp.status == 200 and await resp.json() == {"status": "ok"}
        assert resp.headers["x-request-id"]


async def test_mock_dialect_streams_and_counts(gateway, key):
    client = gateway.sdk(key)
    stream = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 20
    assert chunks[-1].usage.completion_tokens == 21   # 20 words and a full stop
    answer = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=3)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 3


async def test_unknown_route_is_404_even_for_restricted_key(gateway):
    key = (await gateway.create_key(models=["demo"]))["key"]
    resp = await gateway.post(key, {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 404
    assert check_error(await resp.json(), "model_not_found")["param"] == "model"
    resp = await gateway.post(key, {"model": "gpt", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 403
    assert check_error(await resp.json(), "model_not_allowed")["type"] == "permission_error"
    with pytest.raises(openai.NotFoundError):
        await gateway.sdk(key).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
