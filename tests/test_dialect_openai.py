"""The OpenAI dialect: golden stream translation, request building, responses.

Golden files: each recorded stream in fixtures/upstream/openai/*.sse goes
through the relay's pipeline (SSEDecoder -> openai.stream_decoder() ->
ChunkBuilder) and the emitted chunks must equal fixtures/golden/openai/<name>.jsonl.
The same run is repeated with the input split (see `cuts`), and the key facts
of each recording are asserted against the recording itself, so a regenerated
golden file cannot hide a mistake.

Regenerate the golden files (then read them!) with `python -m tests.test_dialect_openai`.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gateway.core.translate import StreamTranslator
from gateway.dialects import openai
from gateway.dialects.base import Completion, SSEEvent, TargetView, UpstreamError, Usage
from gateway.front.chat_encode import ChunkBuilder
from tests.conftest import check_stream, joined

FIXTURES = Path(__file__).parent / "fixtures"
STREAMS = FIXTURES / "upstream" / "openai"
GOLDEN = FIXTURES / "golden" / "openai"
NAMES = sorted(p.stem for p in STREAMS.glob("*.sse"))

ID, CREATED, MODEL = "chatcmpl-golden", 1700000000, "golden-route"   # fixed so golden files are stable
PROMPT_ESTIMATE = 5
SMALL = 4096          # recordings up to this size are split at every offset


def pipeline(pieces: list[bytes], include_usage: bool = True) -> list:
    """What the relay does with upstream reads; returns the client's events (`[DONE]` kept as a string)."""
    return client_events(pipeline_bytes(pieces, include_usage))


def pipeline_bytes(pieces: list[bytes], include_usage: bool = True) -> bytes:
    """The relay's own translator, fed the upstream reads as they came."""
    translator = StreamTranslator(openai.stream_decoder(),
                                  ChunkBuilder(ID, CREATED, MODEL, include_usage, PROMPT_ESTIMATE))
    out = [translator.feed(piece) for piece in pieces if not translator.done]
    assert translator.done, "every recording ends with [DONE]"
    out.append(translator.finish())
    return b"".join(out)


def client_events(raw: bytes) -> list:
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"" and all(b.startswith(b"data: ") for b in blocks[:-1]), raw
    return [b[6:].decode() if b == b"data: [DONE]" else json.loads(b[6:]) for b in blocks[:-1]]


def golden(name: str) -> list[dict]:
    lines = (GOLDEN / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def recording(name: str) -> bytes:
    return (STREAMS / f"{name}.sse").read_bytes()


def cuts(size: int) -> list[int]:
    """Every offset of a small recording; of a long one `n` at each end and `n` spread between.

    `n` shrinks as recordings grow, to keep the suite fast: a cut can only change
    how the SSE decoder sees the one event it falls in, and tests/test_sse.py
    splits every event of every recording at every offset. These end-to-end runs
    guard the rest of the pipeline against read boundaries.
    """
    if size <= SMALL:
        return list(range(1, size))
    n = min(64, max(16, 2_000_000 // size))
    stride = (size - 2 * n) // n | 1
    return sorted({*range(1, n + 1), *range(size - n, size), *range(n + 1, size - n, stride)})


# ---------------------------------------------------------------- golden streams

def test_every_recording_has_a_golden_file():
    assert len(NAMES) == 12
    assert {p.stem for p in GOLDEN.glob("*.jsonl")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_golden(name):
    events = pipeline([recording(name)])
    assert events[-1] == "[DONE]"
    assert events[:-1] == golden(name)


@pytest.mark.parametrize("name", NAMES)
def test_golden_split(name):
    raw = recording(name)
    expected = pipeline_bytes([raw])
    assert client_events(expected) == [*golden(name), "[DONE]"]
    assert pipeline_bytes([raw[i:i + 1] for i in range(len(raw))]) == expected, "one byte at a time"
    for size in (3, 64, 1000):
        assert pipeline_bytes([raw[i:i + size] for i in range(0, len(raw), size)]) == expected, size
    for cut in cuts(len(raw)):
        assert pipeline_bytes([raw[:cut], raw[cut:]]) == expected, cut


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("include_usage", [True, False])
def test_golden_output_keeps_every_streaming_rule(name, include_usage):
    """The chunks validate against the official schema and keep SPEC section 5 points 1, 2, 5 and 6."""
    events = pipeline([recording(name)], include_usage)
    chunks = check_stream(events, MODEL, include_usage)
    assert {c["id"] for c in chunks} == {ID} and {c["created"] for c in chunks} == {CREATED}
    assert chunks == (golden(name) if include_usage else golden(name)[:-1])


def upstream_facts(name: str) -> dict:
    """What the recording says for choice 0, read with plain json, independent of the code under test."""
    facts = {"content": "", "reasoning": "", "refusal": "", "args": {}, "finish": [], "usage": []}
    for block in recording(name).decode().split("\n\n"):
        if not block.startswith("data: ") or block == "data: [DONE]":
            continue
        obj = json.loads(block[6:])
        if obj.get("usage"):
            facts["usage"].append(obj["usage"])
        for choice in obj["choices"]:
            if choice["index"] != 0:
                continue
            d = choice["delta"]
            facts["content"] += d.get("content") or ""
            facts["reasoning"] += d.get("reasoning_content") or d.get("reasoning") or ""
            facts["refusal"] += d.get("refusal") or ""
            for n, call in enumerate(d.get("tool_calls") or ()):
                i = call.get("index", n)
                facts["args"][i] = facts["args"].get(i, "") + call["function"].get("arguments", "")
            if choice.get("finish_reason"):
                facts["finish"].append(choice["finish_reason"])
    return facts


def tool_calls(chunks: list[dict]) -> dict[int, tuple]:
    """Reassemble tool-call fragments the way an OpenAI client does."""
    calls: dict[int, dict] = {}
    for c in chunks:
        for frag in (c["choices"][0]["delta"].get("tool_calls") or ()) if c["choices"] else ():
            call = calls.setdefault(frag["index"], {"id": None, "name": None, "arguments": ""})
            call["id"] = frag.get("id") or call["id"]
            call["name"] = frag.get("function", {}).get("name") or call["name"]
            call["arguments"] += frag.get("function", {}).get("arguments") or ""
    return {i: (c["id"], c["name"], json.loads(c["arguments"])) for i, c in calls.items()}


R = {"completion_tokens_details": {"reasoning_tokens": 0}}
EXPECTED = {
    "azure-prompt-filter-results": dict(
        content="Capital of Denmark.", finish="stop",
        usage={"prompt_tokens": 15, "completion_tokens": 78, "total_tokens": 93,
               "completion_tokens_details": {"reasoning_tokens": 64}, "prompt_tokens_details": {"cached_tokens": 0}}),
    "deepseek-reasoning-content": dict(
        content='The word "strawberry" contains three "r"s.', finish="stop",
        reasoning=('We need to count the number of the letter "r"', "Thus, the answer is 3."),
        usage={"prompt_tokens": 18, "completion_tokens": 219, "total_tokens": 237,
               "completion_tokens_details": {"reasoning_tokens": 205}, "prompt_tokens_details": {"cached_tokens": 0}}),
    "deepseek-reasoning-tool-call": dict(
        content="", finish="tool_calls",
        reasoning=("The user is asking for the weather in San Francisco.", 'set to "San Francisco".'),
        calls={0: ("call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", "weather", {"location": "San Francisco"})},
        usage={"prompt_tokens": 339, "completion_tokens": 83, "total_tokens": 422,
               "completion_tokens_details": {"reasoning_tokens": 39},
               "prompt_tokens_details": {"cached_tokens": 320}}),
    "groq-reasoning-field": dict(
        content=("The word **\"strawberry\"** is spelled as **S-T-R-A-W-B-E-R-R-Y**.",
                 "**Final Answer**: $\\boxed{3}$"), finish="stop",
        reasoning=("Okay, let me try to figure out how many times the letter 'r' appears",
                   "the number of R's in \"strawberry\" is three.\n"),
        usage={"prompt_tokens": 17, "completion_tokens": 1107, "total_tokens": 1124,
               "completion_tokens_details": {"reasoning_tokens": 963}}),
    "mistral-text-usage-in-last-chunk": dict(
        content="Hello, world! This is a test response.", finish="stop",
        usage={"prompt_tokens": 13, "completion_tokens": 8, "total_tokens": 21}),
    "mistral-tool-call-no-index": dict(
        content="", finish="tool_calls", calls={0: ("gSIMJiOkT", "weather", {"location": "San Francisco"})},
        usage={"prompt_tokens": 124, "completion_tokens": 22, "total_tokens": 146}),
    "openai-finish-length": dict(
        content='{"', finish="length", usage={"prompt_tokens": 79, "completion_tokens": 1, "total_tokens": 80, **R}),
    "openai-multiple-choices-n3": dict(       # choice 0 only: temperature 65 (choices 1 and 2 say 61 and 59)
        content='{"city":"San Francisco","temperature":65,"units":"f"}', finish="stop",
        usage={"prompt_tokens": 79, "completion_tokens": 42, "total_tokens": 121, **R}),
    "openai-parallel-tool-calls": dict(
        content="", finish="tool_calls",
        calls={0: ("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs",
                   {"city": "Edinburgh", "country": "GB", "units": "c"}),
               1: ("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"})},
        usage={"prompt_tokens": 149, "completion_tokens": 60, "total_tokens": 209, **R}),
    "openai-refusal": dict(
        content="", refusal="I'm sorry, I can't assist with that request.", finish="stop",
        usage={"prompt_tokens": 79, "completion_tokens": 11, "total_tokens": 90, **R}),
    "openai-text-obfuscation": dict(
        content=("**Holiday Name:** Harmony Day\n\n**Date:**", "shared human experiences and mutual respect."),
        finish="stop",
        usage={"prompt_tokens": 16, "completion_tokens": 300, "total_tokens": 316, **R,
               "prompt_tokens_details": {"cached_tokens": 0}}),
    "openai-text-usage-chunk": dict(
        content=("I'm unable to provide real-time weather", "a reliable weather website or a weather app."),
        finish="stop", usage={"prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44, **R}),
}


def _matches(text: str, want) -> bool:
    """`want` is the whole text, or (start, end) of a long one."""
    return text == want if isinstance(want, str) else text.startswith(want[0]) and text.endswith(want[1])


@pytest.mark.parametrize("name", NAMES)
def test_key_facts(name):
    want, up = EXPECTED[name], upstream_facts(name)
    events = pipeline([recording(name)])
    chunks = events[:-1]
    with_choices = [c for c in chunks if c["choices"]]
    content, reasoning = joined(chunks, "content"), joined(chunks, "reasoning_content")
    assert content == up["content"] and _matches(content, want["content"])
    assert reasoning == up["reasoning"] and _matches(reasoning, want.get("reasoning", ""))
    assert joined(chunks, "refusal") == up["refusal"] == want.get("refusal", "")
    calls = tool_calls(chunks)
    assert calls == want.get("calls", {})
    assert {i: c[2] for i, c in calls.items()} == {i: json.loads(a) for i, a in up["args"].items()}
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices if c["choices"][0]["finish_reason"]]
    assert finishes == [want["finish"]] == up["finish"]
    assert with_choices[-1]["choices"][0]["finish_reason"] == want["finish"]     # nothing after the finish
    first = with_choices[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert (first["content"] is None) == ("tool_calls" in first or "refusal" in first)   # as OpenAI starts them
    assert chunks[-1] == {"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
                          "choices": [], "usage": want["usage"]}
    assert len(up["usage"]) == 1
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert want["usage"][field] == up["usage"][0][field]
    assert all(set(c["choices"][0]["delta"]) <= {"role", "content", "reasoning_content", "refusal", "tool_calls"}
               for c in with_choices)


# ---------------------------------------------------------------- stream decoder, event by event

def feed(*payloads, done: bool = True):
    dec = openai.stream_decoder()
    out = [d for p in payloads for d in dec.feed(SSEEvent(p if isinstance(p, str) else json.dumps(p)))]
    if done:
        dec.feed(SSEEvent("[DONE]"))
        assert dec.done
    return out


def chunk(delta: dict, finish=None, index: int = 0, **extra) -> dict:
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}], **extra}


def test_reasoning_fields_and_thinking_parts_all_become_reasoning():
    deltas = feed(chunk({"reasoning_content": "a"}), chunk({"reasoning": "b"}),
                  chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "c"}]},
                                     {"type": "text", "text": "d"}]}),
                  chunk({"content": [{"type": "thinking", "thinking": "e"}]}))
    assert [(d.reasoning, d.content) for d in deltas] == [("a", None), ("b", None), ("c", "d"), ("e", "")]


def test_done_stops_and_nothing_is_lost_before_it():
    dec = openai.stream_decoder()
    assert not dec.done
    assert dec.feed(SSEEvent(json.dumps(chunk({"content": "x"}))))[0].content == "x"
    assert dec.feed(SSEEvent("[DONE]")) == [] and dec.done and dec.finish() == []


@pytest.mark.parametrize("reason,expected", [("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"),
                                             ("content_filter", "content_filter"), ("eos", "stop"),
                                             ("insufficient_system_resource", "stop"), ("", None), (None, None)])
def test_finish_reasons_are_the_four_openai_ones(reason, expected):
    assert feed(chunk({}, reason))[0].finish_reason == expected


def test_other_choices_are_ignored_but_their_usage_is_not():
    deltas = feed(chunk({"content": "one"}, index=1), {**chunk({"content": "x"}, index=2), "usage": {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    assert [d.usage for d in deltas] == [Usage(3, 4, None, None)]


def test_usage_on_every_chunk_as_null_is_no_usage():
    assert feed({**chunk({"content": "x"}), "usage": None})[0].usage is None


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '"text"', json.dumps({"error": {"message": "boom"}}),
                                     json.dumps({"error": "boom"})])
def test_malformed_or_error_events_are_upstream_errors(payload):
    with pytest.raises(UpstreamError):
        feed(payload, done=False)


def test_error_null_is_not_an_error():
    assert feed({**chunk({"content": "x"}), "error": None})[0].content == "x"


@pytest.mark.parametrize("delta", [{"content": 5}, {"content": {"a": 1}}, {"refusal": 3}, {"tool_calls": "x"},
                                   {"tool_calls": [1, "x"]}, {"reasoning_content": ["x"]}])
def test_odd_field_types_are_dropped_not_crashed_on(delta):
    d = feed(chunk(delta))[0]
    assert (d.content, d.refusal, d.tool_calls, d.reasoning) == (None, None, None, None)


def test_odd_shapes_of_the_event_itself():
    assert feed({"choices": None}, {"choices": [None, 3]}, {"choices": [{"index": 0, "delta": None}]},
                {"choices": [], "usage": {"prompt_tokens": "many", "completion_tokens": None}}) \
        == feed({"choices": [{"index": 0, "delta": {}}]}) + feed({"choices": [], "usage": {}})


def test_tool_call_arguments_given_as_an_object_become_json_text():
    delta = feed(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]}))
    assert delta[0].tool_calls == [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a":1}'}}]


# ---------------------------------------------------------------- build_request

TARGET = TargetView(model="up-model", base_url="https://api.example.com/v1/", api_key="sk-upstream-secret",
                    headers={"x-extra": "1"})
HISTORY = [{"role": "user", "content": "hi"},
           {"role": "assistant", "content": "Hello", "reasoning_content": "thought", "reasoning_signature": "sig"},
           {"role": "user", "content": "again"}]


def body(**fields):
    return {"model": "route-name", "messages": copy.deepcopy(HISTORY), **fields}


def test_url_headers_and_model_replaced():
    req = openai.build_request(body(), TARGET, stream=False)
    assert req.url == "https://api.example.com/v1/chat/completions"
    assert req.headers == {"content-type": "application/json", "authorization": "Bearer sk-upstream-secret",
                           "x-extra": "1"}
    assert req.body["model"] == "up-model"


def test_no_authorization_without_a_key():
    req = openai.build_request(body(), TargetView(model="m", base_url="http://h", api_key=None), stream=False)
    assert "authorization" not in req.headers and req.url == "http://h/chat/completions"


@pytest.mark.parametrize("options", [None, {"include_usage": False}, {"include_usage": True}])
def test_streams_always_ask_for_usage(options):
    client = body(stream=True, **({"stream_options": options} if options is not None else {}))
    req = openai.build_request(client, TARGET, stream=True)
    assert req.body["stream"] is True and req.body["stream_options"] == {"include_usage": True}
    assert client.get("stream_options") == options        # the client's body is not changed


def test_non_stream_has_no_stream_options():
    req = openai.build_request(body(stream=False), TARGET, stream=False)
    assert "stream_options" not in req.body and req.body["stream"] is False


def test_reasoning_stripped_from_history_for_a_target_that_does_not_think_natively():
    client = body()
    req = openai.build_request(client, TARGET, stream=False)
    assert req.body["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"},
                                    {"role": "user", "content": "again"}]
    assert client["messages"] == HISTORY                   # stripped in a copy


def test_reasoning_kept_for_a_native_thinking_target_but_not_the_signature():
    native = TargetView(model="r", base_url="http://h", api_key=None, thinking="native")
    req = openai.build_request(body(), native, stream=False)
    assert req.body["messages"][1] == {"role": "assistant", "content": "Hello", "reasoning_content": "thought"}


def test_history_without_reasoning_is_passed_as_is():
    client = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    assert openai.build_request(client, TARGET, stream=False).body["messages"] is client["messages"]


def test_other_openai_params_pass_through_unchanged():
    extra = {"user": "u-1", "parallel_tool_calls": False, "reasoning_effort": "low", "metadata": {"k": "v"},
             "temperature": 0.3, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto",
             "response_format": {"type": "json_object"}, "stop": ["x"], "max_completion_tokens": 9,
             "thinking": {"type": "enabled"}, "some_vendor_field": [1, 2]}
    req = openai.build_request(body(**extra), TARGET, stream=False)
    assert {k: req.body[k] for k in extra} == extra


# ---------------------------------------------------------------- parse_response

def answer(message: dict, **extra) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop",
                         "logprobs": None}], **extra}


def test_parse_plain_answer_with_usage():
    done = openai.parse_response(answer({"content": "hi"}, usage={
        "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
        "completion_tokens_details": {"reasoning_tokens": 1}, "prompt_tokens_details": {"cached_tokens": 3}}))
    assert done == Completion(content="hi", finish_reason="stop", usage=Usage(5, 2, 1, 3))


def test_parse_reasoning_content_and_reasoning_fields():
    assert openai.parse_response(answer({"content": "a", "reasoning_content": "r1"})).reasoning == "r1"
    assert openai.parse_response(answer({"content": "a", "reasoning": "r2"})).reasoning == "r2"
    assert openai.parse_response(answer({"content": "a"})).reasoning is None


def test_parse_content_parts_with_thinking():
    done = openai.parse_response(answer({"content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "Let me "}, {"type": "text", "text": "see."}]},
        {"type": "text", "text": "The answer"}, {"type": "text", "text": " is 4."}]}))
    assert (done.reasoning, done.content) == ("Let me see.", "The answer is 4.")


def test_parse_tool_calls_refusal_logprobs_and_finish():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    data = answer({"content": None, "tool_calls": calls})
    data["choices"][0].update(finish_reason="tool_calls", logprobs={"content": []})
    done = openai.parse_response(data)
    assert (done.content, done.tool_calls, done.finish_reason, done.logprobs) == (None, calls, "tool_calls",
                                                                                  {"content": []})
    assert openai.parse_response(answer({"content": None, "refusal": "No."})).refusal == "No."


def test_parse_without_usage_or_finish_reason():
    data = answer({"content": "x"})
    data["choices"][0]["finish_reason"] = None
    done = openai.parse_response(data)
    assert done.usage is None and done.finish_reason == "stop"


@pytest.mark.parametrize("data,message", [
    ({"error": {"message": "Rate limit reached", "type": "requests"}}, "Rate limit reached"),
    ({"error": {"type": "server_error"}}, "server_error"),
    ({"error": "model overloaded"}, "model overloaded"),
    ({"object": "chat.completion", "choices": []}, "upstream answer has no choices"),
    ({"choices": [None]}, "upstream answer has no choices"),
    ([1, 2], "upstream answer has no choices"),
    ("text", "upstream answer has no choices"),
])
def test_parse_error_bodies_raise_upstream_error(data, message):
    with pytest.raises(UpstreamError) as err:
        openai.parse_response(data)
    assert err.value.message == message


def test_module_exposes_the_dialect_interface():
    assert openai.name == "openai"
    for attr in ("build_request", "parse_response", "stream_decoder", "error_message"):
        assert callable(getattr(openai, attr))


def regenerate() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        events = pipeline([recording(name)])
        lines = [json.dumps(c, ensure_ascii=False) for c in events[:-1]]
        (GOLDEN / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {name}.jsonl ({len(lines)} chunks)")


if __name__ == "__main__":
    regenerate()
