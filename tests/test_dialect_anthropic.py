"""The Anthropic dialect: golden stream translation, request building, responses.

Golden files: each recorded stream in fixtures/upstream/anthropic/*.sse is
decoded into SSE events, fed to the dialect's stream decoder, and the Deltas
(as dicts) must equal fixtures/golden/anthropic/<name>.jsonl. The same run is
repeated with the bytes split at every offset. Key facts of each recording are
asserted explicitly too, so a regenerated golden file cannot hide a mistake.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from gateway.core.sse import SSEDecoder
from gateway.dialects import anthropic
from gateway.dialects.base import Delta, SSEEvent, TargetView, UpstreamError, Usage

FIXTURES = Path(__file__).parent / "fixtures"
STREAMS = FIXTURES / "upstream" / "anthropic"
GOLDEN = FIXTURES / "golden" / "anthropic"
ERROR_STREAMS = {"error-midstream-fragment", "error-overloaded-docs"}
OK_STREAMS = sorted(p.stem for p in STREAMS.glob("*.sse") if p.stem not in ERROR_STREAMS)


def decode(chunks: list[bytes]) -> list[Delta]:
    sse, dec = SSEDecoder(), anthropic.stream_decoder()
    out: list[Delta] = []
    for chunk in chunks:
        for event in sse.feed(chunk):
            out += dec.feed(event)
    for event in sse.flush():
        out += dec.feed(event)
    out += dec.finish()
    assert dec.done
    return out


def as_dicts(deltas: list[Delta]) -> list[dict]:
    """The neutral fields (the golden files' shape): `native` is for a Messages front only."""
    return [{k: v for k, v in dataclasses.asdict(d).items() if k != "native"} for d in deltas]


def golden(name: str) -> list[dict]:
    lines = (GOLDEN / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def joined(deltas: list[Delta], field: str) -> str:
    return "".join(getattr(d, field) for d in deltas if getattr(d, field))


def tool_calls(deltas: list[Delta]) -> dict[int, dict]:
    """Reassemble tool-call fragments the way an OpenAI client does."""
    calls: dict[int, dict] = {}
    for d in deltas:
        for frag in d.tool_calls or []:
            call = calls.setdefault(frag["index"], {"id": None, "name": None, "arguments": ""})
            call["id"] = frag.get("id") or call["id"]
            call["name"] = frag.get("function", {}).get("name") or call["name"]
            call["arguments"] += frag.get("function", {}).get("arguments", "")
    return calls


def events(*payloads: dict, named: bool = True) -> list[SSEEvent]:
    return [SSEEvent(json.dumps(p), p["type"] if named else None) for p in payloads]


def run(evts: list[SSEEvent]) -> list[Delta]:
    dec = anthropic.stream_decoder()
    out = [d for e in evts for d in dec.feed(e)]
    return out + dec.finish()


# ---------------------------------------------------------------- golden streams

def test_every_recording_has_a_golden_file_or_is_an_error():
    names = {p.stem for p in STREAMS.glob("*.sse")}
    assert names >= ERROR_STREAMS and len(OK_STREAMS) == 6
    assert {p.stem for p in GOLDEN.glob("*.jsonl")} == set(OK_STREAMS)


@pytest.mark.parametrize("name", OK_STREAMS)
def test_golden(name):
    assert as_dicts(decode([(STREAMS / f"{name}.sse").read_bytes()])) == golden(name)


@pytest.mark.parametrize("name", OK_STREAMS)
def test_golden_split_at_every_offset(name):
    raw = (STREAMS / f"{name}.sse").read_bytes()
    whole = decode([raw])
    assert as_dicts(whole) == golden(name)
    for cut in range(1, len(raw)):      # Deltas compared as they are: as_dicts on each cut was 70% of the time
        assert decode([raw[:cut], raw[cut:]]) == whole, cut


EXPECTED = {
    "text-ping": dict(
        content="Hello! I'm doing well, thank you for asking. How are you doing today? "
                "Is there anything I can help you with?",
        reasoning="", calls={}, finish="stop", usage=Usage(12, 30, None, 0, 0)),
    "thinking-signature": dict(
        content="925 ÷ 5 = 185",
        reasoning="The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185",
        calls={}, finish="stop", usage=Usage(69, 53, None, 0, 0)),
    "docs-thinking": dict(
        content="The greatest common divisor of 1071 and 462 is **21**.",
        reasoning="I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n"
                  "1071 = 2 × 462 + 147\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n"
                  "The remainder is 0, so GCD(1071, 462) = 21.",
        calls={}, finish="stop", usage=None),      # the docs transcript carries no usage
    "text-then-tool-use-pings": dict(
        content="I'll invoke the JSON response tool.", reasoning="",
        calls={0: ("toolu_01KFbKqPYSuAKujiL6mTfzYA", "json", {"elements": [
            {"location": "San Francisco", "temperature": 58, "condition": "sunny"}]})},
        finish="tool_calls", usage=Usage(849, 47, None, 0, 0)),
    "tool-use-input-json-delta": dict(
        content="I'll check the current weather in Paris for you.", reasoning="",
        calls={0: ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"})},
        finish="tool_calls", usage=Usage(377, 65, None, 0, 0)),
    "docs-tool-use": dict(
        content="Okay, let's check the weather for San Francisco, CA:", reasoning="",
        calls={0: ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA"})},
        finish="tool_calls", usage=Usage(472, 89, None, None)),
}


@pytest.mark.parametrize("name", OK_STREAMS)
def test_key_facts(name):
    want = EXPECTED[name]
    deltas = decode([(STREAMS / f"{name}.sse").read_bytes()])
    assert joined(deltas, "content") == want["content"]
    assert joined(deltas, "reasoning") == want["reasoning"]
    calls = tool_calls(deltas)
    assert {i: (c["id"], c["name"], json.loads(c["arguments"])) for i, c in calls.items()} == want["calls"]
    assert [d.finish_reason for d in deltas if d.finish_reason] == [want["finish"]]
    usages = [d.usage for d in deltas if d.usage]
    assert usages == ([want["usage"]] if want["usage"] else [])
    if usages:
        assert deltas[-1].usage is not None      # usage comes last, after finish_reason
    # no delta mixes kinds: each carries exactly one thing
    for d in deltas:
        assert sum(v is not None for v in dataclasses.asdict(d).values()) == 1


def test_thinking_signature_is_passed_on_whole():
    deltas = decode([(STREAMS / "thinking-signature.sse").read_bytes()])
    sigs = [d.signature for d in deltas if d.signature]
    assert len(sigs) == 1 and sigs[0].startswith("EvQBCkYICxgCKkAx") and sigs[0].endswith("Ca17BgB")


def test_error_midstream_raises_after_the_text_it_had():
    raw = (STREAMS / "error-midstream-fragment.sse").read_bytes()
    sse, dec = SSEDecoder(), anthropic.stream_decoder()
    out: list[Delta] = []
    with pytest.raises(UpstreamError) as err:
        for event in sse.feed(raw) + sse.flush():
            out += dec.feed(event)
    assert joined(out, "content") == "d with a replacement character ("
    assert err.value.message == "Internal server error"
    assert (err.value.status, err.value.retryable) == (502, False)
    assert not dec.done


def test_error_overloaded_is_retryable_529():
    with pytest.raises(UpstreamError) as err:
        decode([(STREAMS / "error-overloaded-docs.sse").read_bytes()])
    assert err.value.message == "Overloaded"
    assert (err.value.status, err.value.retryable) == (529, True)


@pytest.mark.parametrize("name", sorted(ERROR_STREAMS))
def test_error_streams_raise_at_every_split(name):
    raw = (STREAMS / f"{name}.sse").read_bytes()
    for cut in range(1, len(raw)):
        with pytest.raises(UpstreamError):
            decode([raw[:cut], raw[cut:]])


# ---------------------------------------------------------------- stream edge cases

START = {"type": "message_start", "message": {"usage": {
    "input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
    "output_tokens": 1}}}
STOP = {"type": "message_stop"}


def block_start(index, block):
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index, delta):
    return {"type": "content_block_delta", "index": index, "delta": delta}


def message_delta(stop_reason, **usage):
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": usage}


def test_event_type_falls_back_to_the_json_type():
    deltas = run(events(START, block_start(0, {"type": "text", "text": ""}),
                        block_delta(0, {"type": "text_delta", "text": "hi"}),
                        message_delta("end_turn", output_tokens=3), STOP, named=False))
    assert joined(deltas, "content") == "hi"
    assert deltas[-1].usage == Usage(115, 3, None, 100, 5)


def test_tool_index_counts_tool_blocks_only():
    deltas = run(events(
        START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
        block_start(1, {"type": "tool_use", "id": "t_a", "name": "a", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"x":'}),
        block_start(2, {"type": "server_tool_use", "id": "s_1", "name": "web_search", "input": {}}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '{"query":"q"}'}),
        block_start(3, {"type": "redacted_thinking", "data": "opaque"}),
        block_start(4, {"type": "tool_use", "id": "t_b", "name": "b", "input": {}}),
        block_delta(4, {"type": "input_json_delta", "partial_json": "{}"}),
        block_delta(1, {"type": "input_json_delta", "partial_json": "1}"}),
        message_delta("tool_use", output_tokens=9), STOP))
    calls = tool_calls(deltas)
    assert calls == {0: {"id": "t_a", "name": "a", "arguments": '{"x":1}'},
                     1: {"id": "t_b", "name": "b", "arguments": "{}"}}
    assert joined(deltas, "reasoning") == "hmm"


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("max_tokens", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
])
def test_stream_finish_reasons(stop_reason, finish):
    deltas = run(events(START, message_delta(stop_reason, output_tokens=1), STOP))
    assert [d.finish_reason for d in deltas if d.finish_reason] == [finish]


def test_message_delta_usage_overrides_start_and_is_cumulative():
    deltas = run(events(START, message_delta(None, output_tokens=4),
                        message_delta("end_turn", input_tokens=20, output_tokens=7), STOP))
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage == Usage(prompt_tokens=125, completion_tokens=7, cached_tokens=100, cache_write_tokens=5)


def test_missing_message_delta_still_gives_one_finish_reason():
    deltas = run(events(START, STOP))
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]


def test_ping_unknown_and_late_events_are_ignored():
    dec = anthropic.stream_decoder()
    assert dec.feed(SSEEvent('{"type": "ping"}', "ping")) == []
    assert dec.feed(SSEEvent('{"type": "something_new", "x": 1}', "something_new")) == []
    assert dec.feed(SSEEvent("", None)) == []
    dec.feed(SSEEvent(json.dumps(STOP), "message_stop"))
    assert dec.done
    assert dec.feed(SSEEvent(json.dumps(block_delta(0, {"type": "text_delta", "text": "x"})))) == []
    assert dec.finish() == []


def test_unreadable_event_is_an_upstream_error():
    with pytest.raises(UpstreamError):
        anthropic.stream_decoder().feed(SSEEvent("{not json", "content_block_delta"))


def test_error_event_other_types_are_502_not_retryable():
    evt = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    with pytest.raises(UpstreamError) as err:
        run(events(evt))
    assert (err.value.message, err.value.status, err.value.retryable) == ("slow down", 502, False)


# ---------------------------------------------------------------- build_request

TARGET = TargetView(model="claude-sonnet-4-5", base_url="https://api.anthropic.com/",
                    api_key="sk-ant-test", headers={"anthropic-beta": "x"})


def build(body, target=TARGET, stream=False):
    return anthropic.build_request({"model": "route", **body}, target, stream)


def test_url_headers_and_model():
    req = build({"messages": [{"role": "user", "content": "hi"}]}, stream=True)
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01",
                           "content-type": "application/json", "anthropic-beta": "x"}
    assert req.body == {"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": True,
                        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_no_api_key_header_without_a_key():
    req = build({"messages": [{"role": "user", "content": "hi"}]},
                target=TargetView(model="m", base_url="http://127.0.0.1:9/", api_key=None))
    assert "x-api-key" not in req.headers
    assert req.url == "http://127.0.0.1:9/v1/messages"
    assert "stream" not in req.body


def test_system_and_developer_messages_are_joined_at_the_top():
    req = build({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Late rule."},
    ]})
    assert req.body["system"] == "Be brief.\n\nAnswer in French.\n\nLate rule."
    assert [m["role"] for m in req.body["messages"]] == ["user"]


def test_tool_round_trip_merges_results_and_same_role_turns():
    body = {"messages": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "user", "content": "in celsius"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{broken"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "user", "content": "thanks"},
    ]}
    original = copy.deepcopy(body)
    msgs = build(body).body["messages"]
    assert body == original                         # the client's body is not mutated
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"] == [{"type": "text", "text": "weather in Paris and Rome?"},
                                  {"type": "text", "text": "in celsius"}]
    assert msgs[1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"type": "text", "text": "thanks"},
    ]


def test_assistant_with_only_tool_calls_and_null_content():
    msgs = build({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}]},
    ]}).body["messages"]
    assert msgs[1]["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]


def test_signed_reasoning_becomes_a_leading_thinking_block():
    msgs = build({"messages": [
        {"role": "user", "content": "925/5?"},
        {"role": "assistant", "content": "185", "reasoning_content": "925 ÷ 5 = 185",
         "reasoning_signature": "EvQB..."},
        {"role": "user", "content": "and /37?"},
    ]}).body["messages"]
    assert msgs[1]["content"] == [
        {"type": "thinking", "thinking": "925 ÷ 5 = 185", "signature": "EvQB..."},
        {"type": "text", "text": "185"},
    ]


def test_unsigned_reasoning_is_dropped():
    msgs = build({"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "thoughts"},
    ]}).body["messages"]
    assert msgs[1]["content"] == [{"type": "text", "text": "a"}]


def test_images():
    msgs = build({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]}).body["messages"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "now"}}]


def test_tools():
    body = build({"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}).body
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice, expected):
    body = build({"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": choice}).body
    assert body["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_use():
    body = build({"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS,
                  "parallel_tool_calls": False}).body
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "parallel_tool_calls" not in body


def test_tool_choice_without_tools_is_dropped():
    body = build({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none"}).body
    assert "tool_choice" not in body and "tools" not in body


@pytest.mark.parametrize("stop, expected", [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_stop_sequences(stop, expected):
    assert build({"messages": [{"role": "user", "content": "hi"}], "stop": stop}).body["stop_sequences"] == expected


def test_sampling_user_and_dropped_openai_fields():
    body = build({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_p": 0.9,
                  "max_tokens": 100, "user": "u-42", "n": 1, "logprobs": False,
                  "response_format": {"type": "text"}, "stream_options": {"include_usage": True},
                  "frequency_penalty": 0.5, "presence_penalty": 0.1, "metadata": {"a": "b"}}).body
    assert body == {"model": "claude-sonnet-4-5", "max_tokens": 100, "temperature": 0.2, "top_p": 0.9,
                    "metadata": {"user_id": "u-42"},
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_max_completion_tokens():
    body = build({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 77}).body
    assert body["max_tokens"] == 77


@pytest.mark.parametrize("thinking, max_tokens, expected_budget, expected_max", [
    ({"type": "enabled"}, None, 2048, 4096),                      # default budget fits default max
    ({"type": "enabled", "budget_tokens": 3000}, 8000, 3000, 8000),
    ({"type": "enabled", "budget_tokens": 3000}, 1000, 3000, 4024),  # max raised above the budget
    ({"type": "enabled", "budget_tokens": 3000}, 3000, 3000, 4024),  # equal is not enough
    ({"type": "enabled", "budget_tokens": 100}, 2000, 1024, 2000),   # Anthropic's floor
])
def test_thinking_budget(thinking, max_tokens, expected_budget, expected_max):
    body = {"messages": [{"role": "user", "content": "hi"}], "thinking": thinking}
    if max_tokens:
        body["max_tokens"] = max_tokens
    out = build(body).body
    assert out["thinking"] == {"type": "enabled", "budget_tokens": expected_budget}
    assert out["max_tokens"] == expected_max


def test_thinking_disabled_is_dropped():
    out = build({"messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "disabled"}}).body
    assert "thinking" not in out and out["max_tokens"] == 4096


# ---------------------------------------------------------------- parse_response

# Our own sample in the documented Messages API response shape (tool use guide):
# text then tool_use, stop_reason "tool_use", usage with both cache fields.
TOOL_USE_RESPONSE = {
    "id": "msg_01GatewayTestToolUse", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "text", "text": "I'll look that up for you."},
        {"type": "tool_use", "id": "toolu_01GatewayTestCall", "name": "get_weather",
         "input": {"city": "London", "units": "celsius"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 150, "output_tokens": 87,
              "cache_creation_input_tokens": 30, "cache_read_input_tokens": 120},
}

# Our own sample in the documented extended-thinking shape: a signed thinking
# block, a redacted_thinking block (ignored), then text.
THINKING_RESPONSE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Two cases to compare first.", "signature": "sig-thinking-1"},
        {"type": "redacted_thinking", "data": "opaque-encrypted-bytes"},
        {"type": "text", "text": "The first case is larger."},
    ],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 50, "output_tokens": 400},
}


def test_parse_tool_use_response():
    c = anthropic.parse_response(TOOL_USE_RESPONSE)
    assert c.content == "I'll look that up for you."
    assert c.reasoning is None and c.signature is None
    assert c.finish_reason == "tool_calls"
    (call,) = c.tool_calls
    assert call["id"] == "toolu_01GatewayTestCall" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "London", "units": "celsius"}
    assert c.usage == Usage(prompt_tokens=300, completion_tokens=87, reasoning_tokens=None, cached_tokens=120,
                            cache_write_tokens=30)


def test_parse_thinking_response():
    c = anthropic.parse_response(THINKING_RESPONSE)
    assert c.content == "The first case is larger."
    assert c.reasoning == "Two cases to compare first."
    assert c.signature == "sig-thinking-1"
    assert c.finish_reason == "stop" and c.tool_calls is None
    assert c.usage == Usage(prompt_tokens=50, completion_tokens=400, reasoning_tokens=None, cached_tokens=None)


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop"),
])
def test_parse_finish_reasons(stop_reason, finish):
    data = {"content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    c = anthropic.parse_response(data)
    assert c.finish_reason == finish and c.usage is None


def test_parse_last_thinking_signature_wins_and_thoughts_join():
    c = anthropic.parse_response({"content": [
        {"type": "thinking", "thinking": "a", "signature": "s1"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "thinking", "thinking": "b", "signature": "s2"},
    ], "stop_reason": "tool_use"})
    assert (c.reasoning, c.signature, c.content) == ("ab", "s2", None)
    assert c.tool_calls[0]["function"]["arguments"] == "{}"


# ---------------------------------------------------------------- error_message

@pytest.mark.parametrize("data, message", [
    ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "Overloaded"),
    ({"type": "error", "error": {"type": "invalid_request_error",
                                 "message": "max_tokens: Field required"}}, "max_tokens: Field required"),
    ({"type": "error", "error": {"type": "api_error"}}, "api_error"),
    ({"unexpected": True}, None),
    ("plain text", None),
    (None, None),
])
def test_error_message(data, message):
    assert anthropic.error_message(data) == message


def test_module_exposes_the_dialect_interface():
    assert anthropic.name == "anthropic"
    for attr in ("build_request", "parse_response", "stream_decoder", "error_message"):
        assert callable(getattr(anthropic, attr))
