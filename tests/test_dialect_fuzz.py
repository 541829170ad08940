"""Hostile upstream events, fuzzed: a dialect either reads an event or says it cannot (UpstreamError).

The relay turns anything else into an error event too, but a dialect that raises
TypeError on odd input has a bug worth knowing about, so this holds them to it.
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.dialects import anthropic, openai, openai_responses
from gateway.dialects.base import SSEEvent, UpstreamError
from gateway.front.chat_encode import ChunkBuilder

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.integers(-2 ** 63, 2 ** 64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=10)
delta = st.fixed_dictionaries({}, optional={k: values for k in (
    "role", "content", "reasoning_content", "reasoning", "refusal", "tool_calls")})
openai_events = st.lists(st.one_of(
    values,
    st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries(
        {"index": st.one_of(st.just(0), values), "delta": st.one_of(delta, values)},
        optional={"finish_reason": values, "logprobs": values}), max_size=2)},
        optional={"usage": st.one_of(values, st.fixed_dictionaries({}, optional={
            "prompt_tokens": values, "completion_tokens": values, "completion_tokens_details": values}))}),
), max_size=6)
anthropic_types = st.sampled_from(["message_start", "content_block_start", "content_block_delta",
                                   "content_block_stop", "message_delta", "message_stop", "ping", "error"])
anthropic_events = st.lists(st.tuples(anthropic_types, st.fixed_dictionaries({}, optional={
    "index": values, "message": values, "content_block": values, "delta": values, "usage": values,
    "error": values})), max_size=6)
responses_types = st.sampled_from([
    "response.created", "response.output_item.added", "response.output_text.delta", "response.refusal.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    "response.incomplete", "response.failed", "error", "response.content_part.added"])
responses_events = st.lists(st.tuples(st.one_of(responses_types, values), st.fixed_dictionaries({}, optional={
    "item_id": values, "output_index": values, "delta": values, "item": st.one_of(values, st.fixed_dictionaries(
        {"type": st.sampled_from(["function_call", "reasoning", "message"])},
        optional={"id": values, "call_id": values, "name": values, "arguments": values,
                  "encrypted_content": values})),
    "arguments": values, "summary_index": values, "response": values, "error": values, "code": values,
    "message": values})), max_size=6)


def _run(dialect, events, native: bool = False) -> None:
    decoder = dialect.stream_decoder(native)
    builder = ChunkBuilder("id", 1, "m", True, 3)
    try:
        for event in events:
            for d in decoder.feed(event):
                builder.push(d)
        for d in decoder.finish():
            builder.push(d)
        builder.finish()
    except UpstreamError:
        pass


# The stream decoders' fuzz runs 200 event lists each (400 before; nearly all of it is hypothesis drawing the
# events): a type slip put back into each decoder (OpenAI: a list item taken as a tool call; Anthropic: a
# non-object read as one; Responses: an unhashable item id) failed it on 6 seeds of 6 at 200, the OpenAI
# one only 3 to 4 times of 6 at 50-100. The bug it found in CI (absurd usage counts) has its own test below.
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(openai_events)
def test_openai_decoder_never_trips(events):
    _run(openai, [SSEEvent(json.dumps(e)) for e in events])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(anthropic_events)
def test_anthropic_decoder_never_trips(events):
    _run(anthropic, [SSEEvent(json.dumps({"type": kind, **body}), kind) for kind, body in events])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(responses_events, st.booleans(), st.booleans())
def test_responses_decoder_never_trips(events, named, native):
    _run(openai_responses, [SSEEvent(json.dumps({"type": kind, **body}), kind if named and isinstance(kind, str)
                                     else None) for kind, body in events], native)


responses_answers = st.fixed_dictionaries({}, optional={
    "status": st.one_of(st.sampled_from(["completed", "incomplete", "failed"]), values), "error": values,
    "incomplete_details": values, "usage": values, "output": st.one_of(values, st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "reasoning", "function_call"])}, optional={
            "content": values, "summary": values, "arguments": values, "call_id": values, "name": values,
            "encrypted_content": values}), max_size=3))})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(responses_answers)
def test_whole_responses_answers_never_trip(data):
    try:
        openai_responses.parse_response(data)
    except UpstreamError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(values)
def test_whole_answers_never_trip(data):
    for dialect in (openai, anthropic, openai_responses):
        try:
            dialect.parse_response(data)
        except UpstreamError:
            pass


def test_absurd_usage_counts_are_ignored():
    for value in (1.8446744073709552e19, 2 ** 63, -5, 1e300):
        events = [SSEEvent(json.dumps({"choices": [], "usage": {"prompt_tokens": value, "completion_tokens": 3}}))]
        decoder, builder = openai.stream_decoder(), ChunkBuilder("id", 1, "m", True, 3)
        for event in events:
            for d in decoder.feed(event):
                builder.push(d)
        assert b'"prompt_tokens":0' in builder.finish()
