"""The `thinking` extension per target, and usage estimated when an upstream gives none."""
from __future__ import annotations

from tests.conftest import check_error, check_stream, joined, parse_sse
from tests.fakes import Behaviour, openai_sse, openai_text


def routes(url: str) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: k-up}}
routes:
  by-model:
    targets:
      - {{provider: up, model: plain-model, thinking: {{model: thinking-model}}}}
  by-params:
    targets:
      - {{provider: up, model: qwen, thinking: {{params: {{enable_thinking: true, chat_template_kwargs: {{x: 1}}}}}}}}
  mixed:
    targets:
      - {{provider: up, model: cannot-think, price: {{input: 1, output: 1}}}}
      - {{provider: up, model: can-think, thinking: native}}
  reasoner-native:
    targets:
      - {{provider: up, model: can-think, thinking: native}}
  never:
    targets:
      - {{provider: up, model: cannot-think}}
"""


THINK = {"type": "enabled", "budget_tokens": 512}
MSG = [{"role": "user", "content": "one two three"}]


async def test_model_form_switches_upstream_model(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    resp = await gw.post(key, {"model": "by-model", "messages": MSG, "thinking": THINK})
    assert resp.status == 200 and resp.headers["x-gateway-model"] == "thinking-model"
    assert upstream.requests[-1]["model"] == "thinking-model" and "thinking" not in upstream.requests[-1]
    resp = await gw.post(key, {"model": "by-model", "messages": MSG})
    assert upstream.requests[-1]["model"] == "plain-model"
    assert (await gw.rows())[0]["upstream_model"] == "thinking-model"


async def test_params_form_merges_fields(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    await gw.post(key, {"model": "by-params", "messages": MSG, "thinking": THINK})
    sent = upstream.requests[-1]
    assert sent["enable_thinking"] is True and sent["chat_template_kwargs"] == {"x": 1} and "thinking" not in sent
    await gw.post(key, {"model": "by-params", "messages": MSG, "thinking": {"type": "disabled"}})
    assert "enable_thinking" not in upstream.requests[-1] and "thinking" not in upstream.requests[-1]


async def test_targets_without_thinking_are_skipped(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    resp = await gw.post(key, {"model": "mixed", "messages": MSG, "thinking": THINK})
    assert resp.status == 200 and upstream.requests[-1]["model"] == "can-think"
    assert upstream.requests[-1]["thinking"] == THINK          # native: forwarded as-is
    await gw.post(key, {"model": "mixed", "messages": MSG})
    assert upstream.requests[-1]["model"] == "cannot-think"
    await gw.post(key, {"model": "reasoner-native", "messages": MSG, "thinking": {"type": "disabled"}})
    assert upstream.requests[-1]["thinking"] == {"type": "disabled"}   # a native target hears "stop thinking"
    resp = await gw.post(key, {"model": "never", "messages": MSG, "thinking": THINK})
    assert resp.status == 400
    err = check_error(await resp.json(), "thinking_not_supported")
    assert err["param"] == "thinking"
    resp = await gw.post(key, {"model": "never", "messages": MSG, "thinking": {"type": "disabled"}})
    assert resp.status == 200 and "thinking" not in upstream.requests[-1]


async def test_stream_usage_is_estimated_when_upstream_gives_none(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    upstream.queue(Behaviour(sse=openai_sse(["<think>a b</think>", "Hello", " world"], usage=False)))
    resp = await gw.post(key, {"model": "mixed", "messages": MSG, "stream": True,
                               "stream_options": {"include_usage": True}})
    chunks = check_stream(parse_sse(await resp.read()), "mixed", include_usage=True)
    assert joined(chunks, "reasoning_content") == "a b" and joined(chunks, "content") == "Hello world"
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 4 and usage["completion_tokens_details"]["reasoning_tokens"] == 2
    assert usage["prompt_tokens"] > 3
    row = (await gw.rows())[-1]
    assert row["usage_source"] == "estimated" and row["completion_tokens"] == 4 and row["reasoning_tokens"] == 2
    assert row["cost_usd"] > 0


async def test_non_stream_usage_is_estimated_when_upstream_gives_none(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    upstream.queue(Behaviour(json=openai_text("three little words", usage=False)))
    body = await (await gw.post(key, {"model": "mixed", "messages": MSG})).json()
    assert body["usage"]["completion_tokens"] == 4   # 3 words, but 16 non-space bytes: a token per 4 bytes
    assert (await gw.rows())[-1]["usage_source"] == "estimated"


async def test_reasoning_history_is_stripped_for_non_native_targets(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    history = [*MSG, {"role": "assistant", "content": "4", "reasoning_content": "r", "reasoning_signature": "s"},
               {"role": "user", "content": "again"}]
    await gw.post(key, {"model": "never", "messages": history})
    assert "reasoning_content" not in upstream.requests[-1]["messages"][1]
    await gw.post(key, {"model": "mixed", "messages": history, "thinking": THINK})
    sent = upstream.requests[-1]["messages"][1]
    assert sent["reasoning_content"] == "r" and "reasoning_signature" not in sent


async def test_mock_reasons_when_asked(gateway, key):
    resp = await gateway.post(key, {"model": "demo", "messages": MSG, "stream": True,
                                    "thinking": {"type": "enabled"}})
    assert resp.status == 400   # the demo route's target has no thinking
    answer = await gateway.sdk(key).chat.completions.create(model="demo", messages=MSG)
    assert answer.choices[0].message.content


def test_token_estimate_counts_cjk_characters():
    from gateway.tokens import count_text

    assert count_text("hello world, ok") == 4
    assert count_text("你好世界，今天天气很好") == 11      # ten characters and a full-width comma
    assert count_text("héllo wörld 東京") == 4
