"""The openai-responses dialect: golden stream translation, request building, whole answers, errors.

Golden files: each recorded stream in fixtures/upstream/openai-responses/*.sse is decoded into SSE
events, fed to the dialect's stream decoder, and the Deltas (as dicts) must equal
fixtures/golden/openai-responses/<name>.jsonl, also with the bytes split at every offset (every 7th
for the long recording). Key facts of each recording are asserted explicitly too, so a regenerated
golden file cannot hide a mistake.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gateway.core.sse import SSEDecoder
from gateway.dialects import get, openai_responses
from gateway.dialects.base import Delta, SSEEvent, TargetView, UpstreamError, Usage

FIXTURES = Path(__file__).parent / "fixtures"
STREAMS = FIXTURES / "upstream" / "openai-responses"
GOLDEN = FIXTURES / "golden" / "openai-responses"
ERROR_STREAMS = {"error-then-failed"}
OK_STREAMS = sorted(p.stem for p in STREAMS.glob("*.sse") if p.stem not in ERROR_STREAMS)
TARGET = TargetView(model="gpt-up", base_url="http://up.example/v1/", api_key="sk-up", headers={"x-extra": "1"})


def decode(chunks: list[bytes], native: bool = False) -> list[Delta]:
    sse, dec = SSEDecoder(), openai_responses.stream_decoder(native)
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
    return [{k: v for k, v in dataclasses.asdict(d).items() if k != "native"} for d in deltas]


def golden(name: str) -> list[dict]:
    lines = (GOLDEN / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def joined(deltas: list[Delta], field: str) -> str:
    return "".join(getattr(d, field) for d in deltas if getattr(d, field))


def tool_calls(deltas: list[Delta]) -> dict[int, tuple]:
    calls: dict[int, dict] = {}
    for d in deltas:
        for frag in d.tool_calls or []:
            call = calls.setdefault(frag["index"], {"id": None, "name": None, "arguments": ""})
            call["id"] = frag.get("id") or call["id"]
            call["name"] = frag.get("function", {}).get("name") or call["name"]
            call["arguments"] += frag.get("function", {}).get("arguments", "")
    return {i: (c["id"], c["name"], json.loads(c["arguments"])) for i, c in calls.items()}


def run(*payloads: dict, native: bool = False) -> list[Delta]:
    dec = openai_responses.stream_decoder(native)
    return [d for p in payloads for d in dec.feed(SSEEvent(json.dumps(p), p.get("type")))]


# ---------------------------------------------------------------- golden streams

def test_every_recording_has_a_golden_file_or_is_an_error():
    assert {p.stem for p in STREAMS.glob("*.sse")} >= ERROR_STREAMS and len(OK_STREAMS) == 3
    assert {p.stem for p in GOLDEN.glob("*.jsonl")} == set(OK_STREAMS)


@pytest.mark.parametrize("name", OK_STREAMS)
def test_golden(name):
    assert as_dicts(decode([(STREAMS / f"{name}.sse").read_bytes()])) == golden(name)


@pytest.mark.parametrize("name", OK_STREAMS)
def test_golden_split_at_every_offset(name):
    raw = (STREAMS / f"{name}.sse").read_bytes()
    whole = decode([raw])
    assert as_dicts(whole) == golden(name)
    step = 1 if len(raw) < 15_000 else 7
    for cut in range(1, len(raw), step):      # Deltas compared as they are: as_dicts on each cut was 70% of the time
        assert decode([raw[:cut], raw[cut:]]) == whole, cut


EXPECTED = {
    "text-two-messages": dict(   # vercel/ai kept only two deltas per message; the two items are set apart
        content="Got it\n\nHere are a few **AI", reasoning="", calls={}, finish="stop",
        usage=Usage(7112, 463, 64, 3072, None)),
    "reasoning-summary-function-call": dict(
        content="", reasoning="**Calculating step-by-step using calculator**\n\nI'll compute 12 plus 7, then "
                              "multiply the result by 3, and finally multiply that by 10, reporting the final product.",
        calls={0: ("call_AB6AaRZ1FYZB2RwS6A5vbdqn", "calculator", {"a": 12, "b": 7, "op": "add"})},
        finish="tool_calls", usage=Usage(134, 28, 0, 0, None)),
    "incomplete-max-output-tokens": dict(
        content="Hello,", reasoning="", calls={}, finish="length", usage=Usage(0, 0, 0, 0, None)),
}


@pytest.mark.parametrize("name", OK_STREAMS)
def test_key_facts(name):
    want = EXPECTED[name]
    deltas = decode([(STREAMS / f"{name}.sse").read_bytes()])
    assert joined(deltas, "content") == want["content"]
    assert joined(deltas, "reasoning") == want["reasoning"]
    assert tool_calls(deltas) == want["calls"]
    assert [d.finish_reason for d in deltas if d.finish_reason] == [want["finish"]]
    assert [d.usage for d in deltas if d.usage] == [want["usage"]]
    assert deltas[-1].usage is not None      # usage comes last, after finish_reason
    for d in deltas:                         # each delta carries exactly one thing
        assert sum(v is not None for v in dataclasses.asdict(d).values()) == 1


def test_encrypted_reasoning_becomes_the_signature():
    deltas = decode([(STREAMS / "reasoning-summary-function-call.sse").read_bytes()])
    signatures = [d.signature for d in deltas if d.signature]
    assert len(signatures) == 1 and signatures[0].startswith("gAAAAABpPDIVOKrs")
    first_call = next(i for i, d in enumerate(deltas) if d.tool_calls)
    assert deltas.index(next(d for d in deltas if d.signature)) < first_call


@pytest.mark.parametrize("name", OK_STREAMS)
def test_native_decoder_carries_every_event_first(name):
    raw = (STREAMS / f"{name}.sse").read_bytes()
    events = [e for e in SSEDecoder().feed(raw)]
    deltas = decode([raw], native=True)
    natives = [d.native for d in deltas if d.native is not None]
    assert [n["type"] for n in natives] == [json.loads(e.data)["type"] for e in events]
    assert as_dicts([d for d in deltas if d.native is None]) == golden(name)
    assert all(d.native is None or sum(v is not None for v in dataclasses.asdict(d).values()) == 1 for d in deltas)


# ---------------------------------------------------------------- failures in a stream

def test_recorded_error_event_fails_the_stream_not_retried():
    with pytest.raises(UpstreamError) as err:
        decode([(STREAMS / "error-then-failed.sse").read_bytes()])
    assert "exceeded your current quota" in err.value.message and not err.value.retryable


@pytest.mark.parametrize("event, status", [
    ({"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "rate_limit_exceeded", "message": "Request too large for gpt-4o-mini on tokens per min"}}}, 429),
    ({"type": "error", "error": {"type": "server_is_overloaded", "code": None, "message": "busy"}}, 503),
    ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None,
      "sequence_number": 3}, 429),
])
def test_busy_upstreams_are_retryable(event, status):
    with pytest.raises(UpstreamError) as err:
        run({"type": "response.created", "response": {}}, event)
    assert err.value.retryable and err.value.status == status and err.value.message


def test_server_error_event_is_not_retryable_and_keeps_its_message():
    with pytest.raises(UpstreamError) as err:
        run({"type": "error", "error": {"type": "server_error", "code": None,
                                        "message": "An error occurred while processing the request."}})
    assert err.value.message == "An error occurred while processing the request." and not err.value.retryable


def test_calls_announced_only_when_done_and_arguments_only_whole():
    deltas = run({"type": "response.output_item.done", "output_index": 0, "item": {
        "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"x":1}'}},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": '{"x":1}'},
        {"type": "response.completed", "response": {"status": "completed"}})
    assert tool_calls(deltas) == {0: ("call_1", "f", {"x": 1})}
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert not any(d.usage for d in deltas)   # no usage given: the gateway estimates


@pytest.mark.parametrize("reason, finish", [("content_filter", "content_filter"), ("max_output_tokens", "length")])
def test_incomplete_reasons(reason, finish):
    deltas = run({"type": "response.incomplete",
                  "response": {"status": "incomplete", "incomplete_details": {"reason": reason}}})
    assert [d.finish_reason for d in deltas] == [finish]


def test_nothing_after_the_end_and_done_marker_ignored():
    dec = openai_responses.stream_decoder()
    assert dec.feed(SSEEvent('{"type":"response.completed","response":{"status":"completed"}}')) \
        == [Delta(finish_reason="stop")]
    assert dec.done and dec.feed(SSEEvent('{"type":"response.output_text.delta","delta":"late"}')) == []
    assert openai_responses.stream_decoder().feed(SSEEvent("[DONE]")) == []


# ---------------------------------------------------------------- whole answers

ANSWER = {"id": "resp_1", "object": "response", "status": "completed", "error": None, "incomplete_details": None,
          "output": [
              {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAAsecret",
               "summary": [{"type": "summary_text", "text": "First"}, {"type": "summary_text", "text": "Second"}]},
              {"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
              {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get", "arguments": "{\"a\":1}"}],
          "usage": {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 32}, "output_tokens": 9,
                    "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 49}}


def test_parse_response():
    done = openai_responses.parse_response(ANSWER)
    assert (done.content, done.reasoning, done.signature) == ("Hi", "First\n\nSecond", "gAAAAsecret")
    assert done.tool_calls == [{"id": "call_9", "type": "function",
                                "function": {"name": "get", "arguments": '{"a":1}'}}]
    assert done.finish_reason == "tool_calls" and done.usage == Usage(40, 9, 5, 32, None)
    assert done.native == ("responses", ANSWER)


@pytest.mark.parametrize("status, details, finish", [
    ("completed", None, "stop"), ("incomplete", {"reason": "max_output_tokens"}, "length"),
    ("incomplete", {"reason": "content_filter"}, "content_filter")])
def test_parse_response_finish(status, details, finish):
    data = {"status": status, "incomplete_details": details,
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}]}
    assert openai_responses.parse_response(data).finish_reason == finish


def test_failed_response_and_error_bodies():
    with pytest.raises(UpstreamError) as err:
        openai_responses.parse_response({"status": "failed", "error": {"code": "server_error", "message": "boom"}})
    assert err.value.message == "boom"
    assert openai_responses.error_message({"error": {"message": "bad", "type": "invalid_request_error"}}) == "bad"
    assert openai_responses.error_message({"type": "error", "code": "x", "message": "top"}) == "top"
    assert openai_responses.error_message(ANSWER) is None and openai_responses.error_message([1]) is None


# ---------------------------------------------------------------- request

def build(body: dict, stream: bool = False, target: TargetView = TARGET) -> dict:
    req = openai_responses.build_request(body, target, stream)
    assert req.url == "http://up.example/v1/responses"
    assert req.headers["authorization"] == "Bearer sk-up" and req.headers["x-extra"] == "1"
    return req.body


def test_registered_with_its_api():
    dialect = get("openai-responses")
    assert dialect is openai_responses and dialect.native_api == "responses" and dialect.needs_base_url


def test_messages_become_input_items():
    sent = build({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                                         "detail": "low"}},
                                     {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "system", "content": "Answer now."},
        {"role": "user", "content": "So?"}], "max_tokens": 300, "temperature": 0.2, "stop": ["X"], "n": 1})
    assert sent["instructions"] == "Be brief.\n\nUse metric."
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"x"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Answer now."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "So?"}]}]
    assert sent["max_output_tokens"] == 300 and sent["temperature"] == 0.2 and sent["store"] is False
    assert "stop" not in sent and "n" not in sent and "messages" not in sent and "stream" not in sent
    assert openai_responses.output_cap(sent) == 300


def test_tools_tool_choice_and_tool_results_with_images():
    sent = build({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": {"w": 1}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [
            {"type": "text", "text": "here"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
        "tools": [{"type": "function", "function": {"name": "shot", "description": "Take one",
                                                    "parameters": {"type": "object", "properties": {"w": {}}}}},
                  {"type": "function", "function": {"name": "strict_one", "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "shot"}}, "parallel_tool_calls": False},
        stream=True)
    assert sent["tools"] == [
        {"type": "function", "name": "shot", "description": "Take one",
         "parameters": {"type": "object", "properties": {"w": {}}}, "strict": False},
        {"type": "function", "name": "strict_one", "parameters": {"type": "object", "properties": {}}, "strict": True}]
    assert sent["tool_choice"] == {"type": "function", "name": "shot"} and sent["parallel_tool_calls"] is False
    assert sent["input"][1] == {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": '{"w":1}'}
    assert sent["input"][2]["output"] == [{"type": "input_text", "text": "here"},
                                          {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"}]
    assert sent["stream"] is True and "max_output_tokens" not in sent
    assert openai_responses.output_cap(sent) is None   # no bound sent: the reservation must know


def test_json_schema_becomes_text_format():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    sent = build({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}})
    assert sent["text"] == {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}}
    sent = build({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})
    assert sent["text"] == {"format": {"type": "json_object"}}


@pytest.mark.parametrize("thinking, effort", [({"type": "enabled"}, "medium"),
                                              ({"type": "enabled", "budget_tokens": 1024}, "low"),
                                              ({"type": "enabled", "budget_tokens": 30000}, "high")])
def test_native_thinking_becomes_reasoning_effort(thinking, effort):
    sent = build({"messages": [{"role": "user", "content": "x"}], "thinking": thinking, "max_tokens": 100})
    assert sent["reasoning"] == {"effort": effort, "summary": "auto"}
    assert sent["include"] == ["reasoning.encrypted_content"] and "thinking" not in sent
    budget = thinking.get("budget_tokens")
    assert sent["max_output_tokens"] == (budget + 1024 if budget else 100)   # reasoning bills inside the cap
    assert openai_responses.output_cap(sent) == sent["max_output_tokens"]


def test_reasoning_effort_and_disabled_thinking():
    sent = build({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "minimal"})
    assert sent["reasoning"]["effort"] == "minimal" and "reasoning_effort" not in sent
    sent = build({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "disabled"}})
    assert "reasoning" not in sent and "include" not in sent
    sent = build({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    assert sent["max_output_tokens"] == 16   # OpenAI's smallest


def test_only_openais_own_encrypted_reasoning_goes_back():
    def assistant(signature):
        return build({"messages": [{"role": "user", "content": "x"}, {
            "role": "assistant", "content": "y", "reasoning_content": "thought",
            "reasoning_signature": signature}]})["input"][1]
    assert assistant("gAAAAABsealed") == {"type": "reasoning", "encrypted_content": "gAAAAABsealed",
                                          "summary": [{"type": "summary_text", "text": "thought"}]}
    assert assistant("EqQBCkYIBxgCKkA-anthropic")["type"] == "message"   # another provider's: dropped


def test_build_native_keeps_the_body_but_the_model():
    body = {"model": "route", "input": [{"type": "message", "role": "user", "content": "hi"}], "store": True,
            "include": ["reasoning.encrypted_content"], "x_unknown": {"a": 1}, "stream": False}
    req = openai_responses.build_native(body, TARGET, True, {"authorization": "Bearer client-key"})
    assert req.body == {**body, "model": "gpt-up", "stream": True} and body["model"] == "route"
    assert req.headers["authorization"] == "Bearer sk-up" and req.url.endswith("/v1/responses")
    assert "stream" not in openai_responses.build_native(body, TARGET, False, {}).body
