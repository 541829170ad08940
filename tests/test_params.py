"""Every row of the SPEC section 5 parameter table, accepted and rejected, over real HTTP.

Each table is sent to one running gateway, case after case, and every case
that misbehaves is collected so one run shows all of them. Rejections are
checked for status 400, the official error envelope, the exact `param` path
and the code; acceptances on the `gpt` route for what the fake upstream got.
"""
from __future__ import annotations

import copy
import json
from typing import Any

import openai
import pytest

from tests.conftest import check_error, default_routes, parse_sse

MSG = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
MISSING = object()          # a field left out of the body


def body(model: str = "gpt", **fields: Any) -> dict[str, Any]:
    out = {"model": model, "messages": copy.deepcopy(MSG), **fields}
    return {k: v for k, v in out.items() if v is not MISSING}


@pytest.fixture
async def roomy_key(gateway) -> str:
    """A key whose limits no table here comes near."""
    return (await gateway.create_key(rpm=1000, tpm=100_000))["key"]


async def rejection(gateway, key: str, sent: Any) -> tuple[int, dict]:
    resp = await gateway.post(key, sent)
    data = await resp.json()
    assert resp.headers.get("x-request-id"), "every answer carries x-request-id"
    return resp.status, data


async def check_rejections(gateway, key: str, cases: list[tuple[Any, str | None, str]], status: int = 400) -> None:
    """Send every (body, param, code) case; all must be refused exactly so."""
    wrong = []
    for sent, param, code in cases:
        got_status, data = await rejection(gateway, key, sent)
        try:
            err = check_error(data)
        except AssertionError as exc:
            wrong.append((sent, f"envelope: {exc}"))
            continue
        got = (got_status, err["type"], err["param"], err["code"])
        if got != (status, "invalid_request_error", param, code):
            wrong.append((sent, got))
        elif param is not None and param not in err["message"]:
            wrong.append((sent, f"message does not name {param!r}: {err['message']!r}"))
    assert not wrong, "\n".join(f"{json.dumps(s) if not isinstance(s, bytes) else s!r}: {g}" for s, g in wrong)


async def check_accepted(gateway, key: str, upstream, cases: list[dict[str, Any]]) -> None:
    """Send every body to `gpt`; each must answer 200 and reach the upstream unchanged but for `model`."""
    wrong = []
    for sent in cases:
        before = len(upstream.requests)
        resp = await gateway.post(key, sent)
        raw = await resp.read()
        if resp.status != 200:
            wrong.append((sent, resp.status, raw[:300]))
            continue
        if sent.get("stream"):
            assert parse_sse(raw)[-1] == "[DONE]", raw
        forwarded = upstream.requests[before]
        expected = {k: v for k, v in sent.items() if k not in ("model", "stream_options")}
        got = {k: forwarded.get(k, MISSING) for k in expected}
        if got != expected or forwarded["model"] != "up-model":
            wrong.append((sent, "forwarded as", forwarded))
    assert not wrong, "\n".join(map(str, wrong))


# ---------------------------------------------------------------- model, messages, stream

async def test_model_and_messages_rejected(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(model=MISSING), "model", "missing_required_parameter"),
        (body(model=None), "model", "missing_required_parameter"),
        (body(model=5), "model", "invalid_type"),
        (body(model=["gpt"]), "model", "invalid_type"),
        (body(messages=MISSING), "messages", "missing_required_parameter"),
        (body(messages=None), "messages", "missing_required_parameter"),
        (body(messages=[]), "messages", "invalid_value"),
        (body(messages="hi"), "messages", "invalid_type"),
        (body(messages={"role": "user", "content": "hi"}), "messages", "invalid_type"),
        (body(messages=["hi"]), "messages[0]", "invalid_type"),
        (body(messages=[{"content": "hi"}]), "messages[0].role", "missing_required_parameter"),
        (body(messages=[*MSG, {"content": "again"}]), "messages[1].role", "missing_required_parameter"),
        (body(messages=[{"role": 7, "content": "hi"}]), "messages[0].role", "invalid_type"),
        (body(messages=[{"role": "user", "content": 7}]), "messages[0].content", "invalid_type"),
    ])
    assert upstream.requests == [], "a rejected request never reaches the upstream"


async def test_model_and_messages_accepted(gateway, roomy_key, upstream):
    await check_accepted(gateway, roomy_key, upstream, [
        body(),
        body(model="gpt-alias"),
        body(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": [
            {"type": "text", "text": "hi"}]}, {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}]),
    ])


async def test_stream_flag(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(stream="true"), "stream", "invalid_type"),
        (body(stream=1), "stream", "invalid_type"),
        (body(stream={}), "stream", "invalid_type"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [body(stream=False), body(stream=None), body(stream=True)])


# ---------------------------------------------------------------- sampling numbers

NUMBER_RULES = [("temperature", 0, 2), ("top_p", 0, 1), ("frequency_penalty", -2, 2), ("presence_penalty", -2, 2)]


@pytest.mark.parametrize("name,low,high", NUMBER_RULES)
async def test_numbers_in_range(gateway, roomy_key, upstream, name, low, high):
    await check_rejections(gateway, roomy_key, [
        (body(**{name: low - 0.01}), name, "invalid_value"),
        (body(**{name: high + 0.01}), name, "invalid_value"),
        (body(**{name: high + 100}), name, "invalid_value"),
        (body(**{name: "1"}), name, "invalid_type"),
        (body(**{name: True}), name, "invalid_type"),      # a bool is not a number
        (body(**{name: False}), name, "invalid_type"),
        (body(**{name: [1]}), name, "invalid_type"),
        (body(**{name: {}}), name, "invalid_type"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [
        body(**{name: low}), body(**{name: high}), body(**{name: (low + high) / 2}), body(**{name: 1}),
        body(**{name: float(low)}),
    ])


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens(gateway, roomy_key, upstream, name):
    await check_rejections(gateway, roomy_key, [
        (body(**{name: 0}), name, "invalid_value"),
        (body(**{name: -5}), name, "invalid_value"),
        (body(**{name: 1.5}), name, "invalid_type"),
        (body(**{name: 10.0}), name, "invalid_type"),
        (body(**{name: "10"}), name, "invalid_type"),
        (body(**{name: True}), name, "invalid_type"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [body(**{name: 1}), body(**{name: 4096})])


async def test_max_tokens_and_max_completion_tokens_together(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(max_tokens=10, max_completion_tokens=0), "max_completion_tokens", "invalid_value")])
    await check_accepted(gateway, roomy_key, upstream, [body(max_tokens=10, max_completion_tokens=20)])


# ---------------------------------------------------------------- stop, tools, response_format

async def test_stop(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(stop=["a", "b", "c", "d", "e"]), "stop", "invalid_value"),
        (body(stop=[1]), "stop", "invalid_type"),
        (body(stop=["a", None]), "stop", "invalid_type"),
        (body(stop=5), "stop", "invalid_type"),
        (body(stop={"a": 1}), "stop", "invalid_type"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [
        body(stop="END"), body(stop=["a"]), body(stop=["a", "b", "c", "d"]), body(stop=[])])


async def test_tools_and_tool_choice(gateway, roomy_key, upstream):
    named = {"type": "function", "function": {"name": "get_weather"}}
    await check_rejections(gateway, roomy_key, [
        (body(tools="get_weather"), "tools", "invalid_type"),
        (body(tools={"type": "function"}), "tools", "invalid_type"),
        (body(tools=[5]), "tools[0]", "invalid_type"),
        (body(tools=[TOOL, {"type": "function"}]), "tools[1].function", "missing_required_parameter"),
        (body(tools=[{"type": "function", "function": {}}]), "tools[0].function.name", "missing_required_parameter"),
        (body(tools=[TOOL], tool_choice="sometimes"), "tool_choice", "invalid_value"),
        (body(tools=[TOOL], tool_choice="AUTO"), "tool_choice", "invalid_value"),
        (body(tools=[TOOL], tool_choice=5), "tool_choice", "invalid_type"),
        (body(tools=[TOOL], tool_choice=["auto"]), "tool_choice", "invalid_type"),
        (body(tools=[TOOL], tool_choice={"type": "function"}), "tool_choice.function.name",
         "missing_required_parameter"),
        (body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": 5}}), "tool_choice.function.name",
         "missing_required_parameter"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [
        body(tools=[TOOL]),
        *(body(tools=[TOOL], tool_choice=choice) for choice in ("none", "auto", "required", named)),
    ])


async def test_response_format(gateway, roomy_key, upstream):
    schema = {"name": "answer", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    await check_rejections(gateway, roomy_key, [
        (body(response_format="json_object"), "response_format", "invalid_type"),
        (body(response_format=[{"type": "text"}]), "response_format", "invalid_type"),
        (body(response_format={}), "response_format.type", "missing_required_parameter"),
        (body(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
        (body(response_format={"type": "json_schema"}), "response_format.json_schema", "missing_required_parameter"),
        (body(response_format={"type": "json_schema", "json_schema": "answer"}), "response_format.json_schema",
         "invalid_type"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [
        body(response_format={"type": "text"}), body(response_format={"type": "json_object"}),
        body(response_format={"type": "json_schema", "json_schema": schema}),
    ])


# ---------------------------------------------------------------- logprobs, stream_options

async def test_logprobs_and_top_logprobs(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(logprobs="yes"), "logprobs", "invalid_type"),
        (body(logprobs=1), "logprobs", "invalid_type"),
        (body(logprobs=True, top_logprobs=21), "top_logprobs", "invalid_value"),
        (body(logprobs=True, top_logprobs=-1), "top_logprobs", "invalid_value"),
        (body(logprobs=True, top_logprobs=2.5), "top_logprobs", "invalid_type"),
        (body(logprobs=True, top_logprobs="3"), "top_logprobs", "invalid_type"),
        (body(logprobs=True, top_logprobs=True), "top_logprobs", "invalid_type"),
        (body(top_logprobs=3), "top_logprobs", "invalid_value"),              # only with logprobs: true
        (body(logprobs=False, top_logprobs=3), "top_logprobs", "invalid_value"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [
        body(logprobs=True), body(logprobs=False), body(logprobs=True, top_logprobs=0),
        body(logprobs=True, top_logprobs=20),
    ])


async def test_stream_options(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(stream_options={"include_usage": True}), "stream_options", "invalid_value"),   # only with stream
        (body(stream=False, stream_options={"include_usage": True}), "stream_options", "invalid_value"),
        (body(stream=True, stream_options="usage"), "stream_options", "invalid_type"),
        (body(stream=True, stream_options=[True]), "stream_options", "invalid_type"),
        (body(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage", "invalid_type"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [
        body(stream=True, stream_options={"include_usage": True}),
        body(stream=True, stream_options={"include_usage": False}),
        body(stream=True, stream_options={}),
        body(stream_options=None),
    ])
    # the upstream is always asked for usage, whatever the client asked
    assert [r.get("stream_options") for r in upstream.requests] == [{"include_usage": True}] * 3 + [None]


# ---------------------------------------------------------------- thinking

async def test_thinking_invalid_forms(gateway, roomy_key):
    await check_rejections(gateway, roomy_key, [
        (body(thinking="on"), "thinking", "invalid_type"),
        (body(thinking=True), "thinking", "invalid_type"),
        (body(thinking={}), "thinking.type", "missing_required_parameter"),
        (body(thinking={"budget_tokens": 100}), "thinking.type", "missing_required_parameter"),
        (body(thinking={"type": "maybe"}), "thinking.type", "invalid_value"),
        (body(thinking={"type": "enabled", "budget_tokens": "many"}), "thinking.budget_tokens", "invalid_type"),
        (body(thinking={"type": "enabled", "budget_tokens": 1.5}), "thinking.budget_tokens", "invalid_type"),
        (body(thinking={"type": "enabled", "budget_tokens": True}), "thinking.budget_tokens", "invalid_type"),
        (body(thinking={"type": "enabled", "budget_tokens": 0}), "thinking.budget_tokens", "invalid_value"),
    ])


async def test_thinking_enabled_on_a_route_that_cannot_think(gateway, roomy_key, upstream):
    for model in ("gpt", "gpt-alias", "demo"):
        for thinking in ({"type": "enabled"}, {"type": "enabled", "budget_tokens": 2048}):
            status, data = await rejection(gateway, roomy_key, body(model=model, thinking=thinking))
            err = check_error(data, "thinking_not_supported")
            assert (status, err["param"], err["type"]) == (400, "thinking", "invalid_request_error")
    assert upstream.requests == []


async def test_thinking_disabled_is_accepted_on_every_route(gateway, roomy_key, upstream):
    for model in ("gpt", "demo", "claude", "reasoner"):
        resp = await gateway.post(roomy_key, body(model=model, thinking={"type": "disabled"}))
        assert resp.status == 200, (model, await resp.text())
    # the upstreams that cannot think are not sent a field they may refuse; a native one hears "disabled"
    assert [r.get("thinking") for r in upstream.requests] == [None, None, {"type": "disabled"}]
    assert "thinking" not in upstream.requests[1]      # Anthropic: no thinking block is the off switch


async def test_thinking_enabled_is_forwarded_as_is_to_a_native_target(gateway, roomy_key, upstream):
    for thinking in ({"type": "enabled", "budget_tokens": 1024}, {"type": "enabled"}):
        resp = await gateway.post(roomy_key, body(model="reasoner", thinking=thinking))
        assert resp.status == 200, await resp.text()
        assert upstream.requests[-1]["thinking"] == thinking and upstream.requests[-1]["model"] == "up-reasoner"


# ---------------------------------------------------------------- n, seed, logit_bias

async def test_unsupported_parameters_rejected(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (body(n=2), "n", "unsupported_parameter"),
        (body(n=128), "n", "unsupported_parameter"),
        (body(n=0), "n", "invalid_value"),
        (body(n=-1), "n", "invalid_value"),
        (body(n="2"), "n", "invalid_type"),
        (body(n=1.5), "n", "invalid_type"),
        (body(seed=42), "seed", "unsupported_parameter"),
        (body(seed=0), "seed", "unsupported_parameter"),
        (body(logit_bias={"50256": -100}), "logit_bias", "unsupported_parameter"),
        (body(logit_bias={}), "logit_bias", "unsupported_parameter"),
        (body(model="demo", n=3, seed=1), "n", "unsupported_parameter"),
    ])
    await check_accepted(gateway, roomy_key, upstream, [body(n=1), body(n=None), body(seed=None)])


def drop_routes(upstream_url: str) -> str:
    return "settings: {unsupported_params: drop}\n" + default_routes(upstream_url)


async def test_drop_removes_unsupported_and_says_so(start_gateway, upstream):
    gw = await start_gateway(routes_yaml=drop_routes(upstream.url))
    key = (await gw.create_key())["key"]
    cases = [({"n": 3, "seed": 7, "logit_bias": {"1": 2}}, "n,seed,logit_bias"),
             ({"seed": 7}, "seed"), ({"logit_bias": {"1": 2}, "n": 2}, "n,logit_bias")]
    for extra, header in cases:
        for stream in (False, True):
            resp = await gw.post(key, body(stream=stream, temperature=0.2, **extra))
            raw = await resp.read()
            assert resp.status == 200, raw
            assert resp.headers["x-gateway-dropped-params"] == header
            sent = upstream.requests[-1]
            assert not set(extra) & set(sent) and sent["temperature"] == 0.2
            if stream:
                assert parse_sse(raw)[-1] == "[DONE]"


async def test_drop_keeps_n_1_and_adds_no_header_when_nothing_was_dropped(start_gateway, upstream):
    gw = await start_gateway(routes_yaml=drop_routes(upstream.url))
    key = (await gw.create_key())["key"]
    for extra in ({}, {"n": 1}, {"seed": None}):
        resp = await gw.post(key, body(**extra))
        assert resp.status == 200 and "x-gateway-dropped-params" not in resp.headers
        assert upstream.requests[-1].get("n") == extra.get("n")
    resp = await gw.post(key, body(model="demo", seed=3))       # the mock route drops too
    assert resp.status == 200 and resp.headers["x-gateway-dropped-params"] == "seed"


async def test_drop_does_not_excuse_invalid_values(start_gateway, upstream):
    gw = await start_gateway(routes_yaml=drop_routes(upstream.url))
    key = (await gw.create_key())["key"]
    await check_rejections(gw, key, [
        (body(n=0), "n", "invalid_value"),
        (body(n="3"), "n", "invalid_type"),
        (body(seed=1, temperature=5), "temperature", "invalid_value"),
    ])
    assert upstream.requests == []


# ---------------------------------------------------------------- pass-through

async def test_other_openai_parameters_pass_through_unchanged(gateway, roomy_key, upstream):
    extra = {"user": "user-1234", "parallel_tool_calls": False, "reasoning_effort": "low",
             "metadata": {"team": "search", "ticket": "42"}, "service_tier": "auto", "store": False,
             "prediction": {"type": "content", "content": "x"}, "modalities": ["text"], "verbosity": "low",
             "tools": [TOOL], "tool_choice": "auto", "temperature": 0.7, "top_p": 0.9, "stop": ["\n\n"],
             "max_completion_tokens": 50, "presence_penalty": -0.5, "frequency_penalty": 0.5,
             "response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 3,
             "vendor_extension": {"nested": [1, 2, {"x": None}]}}
    await check_accepted(gateway, roomy_key, upstream, [body(**extra), body(stream=True, **extra)])


async def test_sdk_sees_param_and_code(gateway, roomy_key):
    client = gateway.sdk(roomy_key)
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gpt", messages=MSG, temperature=3)
    assert err.value.status_code == 400 and err.value.code == "invalid_value" and err.value.param == "temperature"


# ---------------------------------------------------------------- bodies that are not a request

async def test_bodies_that_are_not_a_json_object(gateway, roomy_key, upstream):
    await check_rejections(gateway, roomy_key, [
        (b"{not json", None, "invalid_json"),
        (b'{"model": "gpt", "messages": [', None, "invalid_json"),
        (b"", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (json.dumps([body()]).encode(), None, "invalid_json"),
        (b'"a string"', None, "invalid_json"),
        (b"42", None, "invalid_json"),
        (b"null", None, "invalid_json"),
        (b'\xff\xfe{"model": "gpt"}', None, "invalid_json"),                          # not UTF-8
        (b'{"model": "gpt", "messages": [{"role": "user", "content": "\xc3"}]}', None, "invalid_json"),
        (b'{"model": "gpt", "messages": [{"role": "user", "content": "\\ud800"}]}', None, "invalid_json"),
        (b'{"model": "gpt", "messages": [], "temperature": NaN}', None, "invalid_json"),
        ("\ufeff" + json.dumps(body()), None, "invalid_json"),
    ])
    assert upstream.requests == []


def small_routes(upstream_url: str) -> str:
    return "settings: {max_body_bytes: 1024}\n" + default_routes(upstream_url)


def sized(size: int) -> bytes:
    """A valid request body of exactly `size` bytes."""
    base = json.dumps(body(messages=[{"role": "user", "content": ""}])).encode()
    data = json.dumps(body(messages=[{"role": "user", "content": "x" * (size - len(base))}])).encode()
    assert len(data) == size
    return data


async def test_body_over_max_body_bytes_is_413(start_gateway, upstream):
    gw = await start_gateway(routes_yaml=small_routes(upstream.url))
    key = (await gw.create_key())["key"]
    resp = await gw.post(key, sized(1024))
    assert resp.status == 200, await resp.text()

    async def chunked(data: bytes):
        for i in range(0, len(data), 100):
            yield data[i:i + 100]

    for data in (sized(1025), sized(100_000)):
        for send in (data, chunked(data)):                  # with and without a Content-Length
            resp = await gw.http.post(f"{gw.base_url}/chat/completions", data=send,
                                      headers={"Authorization": f"Bearer {key}"})
            assert resp.status == 413
            err = check_error(await resp.json(), "request_too_large")
            assert err["type"] == "invalid_request_error" and "1024" in err["message"]
            assert resp.headers["x-request-id"]
    assert len(upstream.requests) == 1
    rows = await gw.rows()
    assert [(r["status"], r["http_status"], r["error_code"]) for r in rows[1:]] == \
        [("rejected", 413, "request_too_large")] * 4


# ---------------------------------------------------------------- the ledger

async def test_rejected_requests_with_a_valid_key_are_booked(gateway, roomy_key):
    sent = [(body(temperature=9), 400, "invalid_value", "gpt"),
            (body(model="demo", seed=1), 400, "unsupported_parameter", "demo"),
            (body(model="gpt", thinking={"type": "enabled"}), 400, "thinking_not_supported", "gpt"),
            (body(model=5), 400, "invalid_type", None),
            (b"{oops", 400, "invalid_json", None)]
    for data, status, _, _ in sent:
        assert (await gateway.post(roomy_key, data)).status == status
    rows = await gateway.rows()
    key_id = (await gateway.rows("SELECT id FROM api_keys"))[0]["id"]
    assert [(r["status"], r["http_status"], r["error_code"], r["route"]) for r in rows] == \
        [("rejected", status, code, route) for _, status, code, route in sent]
    assert all(r["key_id"] == key_id and r["cost_usd"] == 0 and r["total_tokens"] == 0 and r["request_id"]
               for r in rows)
    assert len({r["request_id"] for r in rows}) == len(rows)


async def test_rejected_requests_do_not_use_up_the_rate_limit(gateway):
    key = (await gateway.create_key(rpm=2))["key"]
    for _ in range(5):
        assert (await gateway.post(key, body(temperature=-1))).status == 400
    for _ in range(2):
        assert (await gateway.post(key, body())).status == 200
    assert (await gateway.post(key, body())).status == 429
