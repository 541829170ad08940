"""`POST /v1/embeddings` with the official openai SDK (SPEC section 10.3)."""
from __future__ import annotations

import base64
import json
import math
import struct

import jsonschema
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.front import embeddings
from tests.conftest import FIXTURES, check_error, default_routes
from tests.fakes import Behaviour

SCHEMA = jsonschema.Draft202012Validator(
    json.loads((FIXTURES / "openai" / "CreateEmbeddingResponse.schema.json").read_text()))


async def raw_embed(gateway, key, body) -> tuple[int, dict]:
    async with gateway.http.post(f"{gateway.base_url}/embeddings", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("route", ["demo", "gpt"])
async def test_sdk_float_and_base64_on_the_mock_and_an_openai_target(gateway, key, upstream, route):
    client = gateway.sdk(key)
    floats = await client.embeddings.create(model=route, input=["hello world", "second text"])
    assert floats.model == route and [d.index for d in floats.data] == [0, 1]
    assert all(isinstance(v, float) for v in floats.data[0].embedding)
    packed = await client.embeddings.create(model=route, input="hello world", encoding_format="base64")
    vector = packed.data[0].embedding   # the SDK decodes base64 only when it asked for it itself
    if isinstance(vector, str):
        raw = base64.b64decode(vector)
        vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert vector == pytest.approx(floats.data[0].embedding, abs=1e-6)
    status, body = await raw_embed(gateway, key, {"model": route, "input": ["a", "b", "c"]})
    assert status == 200
    SCHEMA.validate(body)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    rows = await gateway.rows()
    assert {r["endpoint"] for r in rows} == {"embeddings"} and all(r["status"] == "ok" for r in rows)
    assert all(r["completion_tokens"] == 0 and r["prompt_tokens"] > 0 for r in rows)
    if route == "gpt":
        sent = upstream.requests[-1]
        assert sent == {"model": "up-model", "input": ["a", "b", "c"]}


async def test_the_mock_gives_a_deterministic_unit_vector_of_the_dimensions_asked(gateway, key):
    client = gateway.sdk(key)
    one = await client.embeddings.create(model="demo", input=["same", "other", "same"], dimensions=64)
    vectors = [d.embedding for d in one.data]
    assert all(len(v) == 64 for v in vectors)
    # unit length, within float32 on the wire
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    default = await client.embeddings.create(model="demo", input=[1, 2, 3])
    assert len(default.data[0].embedding) == 1536


async def test_tokens_and_budget_are_on_the_input(start_gateway, upstream):
    routes = default_routes(upstream.url).replace("model: chat, price: {input: 1.0, output: 1.0}",
                                                  "model: chat, price: {input: 1000000.0, output: 1.0}")
    gateway = await start_gateway(routes)
    key = (await gateway.create_key(tpm=100, max_budget=10))["key"]
    status, body = await raw_embed(gateway, key, {"model": "demo", "input": ["word " * 150]})
    assert status == 429 and body["error"]["code"] == "request_exceeds_limit", body   # the input is counted
    status, body = await raw_embed(gateway, key, {"model": "demo", "input": "one"})
    assert status == 200, body   # 1 token at $1 per token
    rows = await gateway.rows("SELECT cost_usd, prompt_tokens FROM requests WHERE status = 'ok'")
    assert rows[0]["cost_usd"] == pytest.approx(rows[0]["prompt_tokens"] * 1.0)


BAD = [({"input": ""}, "input"), ({"input": []}, "input"), ({"input": 5}, "input"), ({}, "input"),
       ({"input": ["a", 3]}, "input[1]"), ({"input": ["a", []]}, "input[1]"), ({"input": [[1, "x"]]}, "input[0]"),
       ({"input": ["x"] * 2049}, "input"), ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
       ({"input": "a", "dimensions": 0}, "dimensions"), ({"input": "a", "dimensions": "8"}, "dimensions"),
       ({"input": "a", "user": 1}, "user")]


@pytest.mark.parametrize("fields,param", BAD)
async def test_bad_input_is_a_400_naming_the_field(gateway, key, upstream, fields, param):
    status, body = await raw_embed(gateway, key, {"model": "gpt", **fields})
    assert status == 400, body
    assert check_error(body)["param"] == param
    assert upstream.requests == []


async def test_a_route_without_an_embedding_target_says_so(gateway, key):
    status, body = await raw_embed(gateway, key, {"model": "claude", "input": "x"})
    assert status == 400 and check_error(body)["code"] == "embeddings_not_supported"


@pytest.mark.parametrize("answer", [{"data": "nope"}, {"data": [{"embedding": "x" * 3}, {"embedding": [1, "a"]}]},
                                    {"data": [{"embedding": []}]}, [1, 2], {"data": [{"embedding": {"a": 1}}]}])
async def test_a_hostile_embeddings_answer_is_a_502_not_a_crash(gateway, key, upstream, answer):
    upstream.queue(*[Behaviour(json=answer)] * 3)
    status, body = await raw_embed(gateway, key, {"model": "gpt", "input": "x"})
    assert status == 502 and check_error(body)["type"] == "api_error"


async def test_the_sdk_raises_typed_errors(gateway, key):
    with pytest.raises(openai.BadRequestError):
        await gateway.sdk(key).embeddings.create(model="demo", input="")
    with pytest.raises(openai.NotFoundError):
        await gateway.sdk(key).embeddings.create(model="nothing-here", input="x")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(["input", "encoding_format", "dimensions", "user", "extra"]),
                            st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
                                         lambda inner: st.lists(inner, max_size=3), max_leaves=6)))
def test_any_body_is_checked_or_refused_with_a_named_field(body):
    try:
        asked = embeddings.decode({"model": "m", **body}, False, {})
    except InvalidRequest as err:
        assert err.status == 400 and err.param
        return
    assert asked.native is not None and asked.unseen >= 1


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.text(max_size=5)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(value=json_values)
def test_a_vector_is_taken_exactly_when_it_is_numbers_or_a_string(value):
    """The check on written bytes agrees with the plain rule, for any JSON an upstream may send."""
    from gateway.dialects.embeddings import _vector

    numbers = isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    taken = _vector(value)
    assert (taken is not None) == (numbers or isinstance(value, str))
    if taken is not None:
        assert json.loads(taken) == value
