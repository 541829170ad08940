"""`POST /v1/responses` to a target that speaks Responses (`dialect: openai-responses`): the client's body as
sent (model aside), the upstream's recorded events relayed, checked and renumbered (SPEC 10.2)."""
from __future__ import annotations

import pytest

from tests.fakes import Behaviour, fixture_sse
from tests.responses_wire import check_events, check_response, parse_events
from tests.test_responses import post
from tests.test_responses_upstream import routes

RECORDINGS = ["text-two-messages", "reasoning-summary-function-call", "incomplete-max-output-tokens"]


@pytest.fixture
async def gw(start_gateway, upstream):
    return await start_gateway(routes(upstream.url))


@pytest.mark.parametrize("name", RECORDINGS)
async def test_recorded_responses_streams_are_relayed_with_our_numbers(gw, upstream, name):
    key = (await gw.create_key())["key"]
    raw = fixture_sse(f"openai-responses/{name}.sse")
    upstream.queue(Behaviour(sse=raw, chunk_size=37))
    body = {"model": "rgpt", "input": "Hello", "stream": True, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "abc"}
    resp = await post(gw, key, body)
    events = parse_events(await resp.read())
    final = check_events(events, model="rgpt")
    sent = upstream.requests[-1]
    assert sent["model"] == "gpt-up" and sent["input"] == "Hello" and sent["prompt_cache_key"] == "abc"
    assert sent["include"] == ["reasoning.encrypted_content"]
    said = [d for _, d in parse_events(raw)]
    texts = "".join(d["delta"] for d in said if d["type"] == "response.output_text.delta")
    assert "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == texts
    upstream_items = [d["item"]["type"] for d in said if d["type"] == "response.output_item.done"]
    assert [i["type"] for i in final["output"]] == upstream_items
    assert final["id"] == "resp_" + (await gw.rows())[-1]["request_id"]


async def test_a_native_conversation_is_sent_whole_since_our_ids_mean_nothing_upstream(gw, upstream):
    key = (await gw.create_key())["key"]
    client = gw.sdk(key)
    first = await client.responses.create(model="rgpt", input="My name is Ada.")
    check_response(first.model_dump(mode="json", exclude_unset=True), "rgpt")
    await client.responses.create(model="rgpt", input="Name?", previous_response_id=first.id)
    sent = upstream.requests[-1]
    assert "previous_response_id" not in sent
    assert sent["input"][0] == {"type": "message", "role": "user", "content": "My name is Ada."}
    assert sent["input"][1]["type"] == "message" and sent["input"][1]["role"] == "assistant"
    assert sent["input"][-1] == {"type": "message", "role": "user", "content": "Name?"}
