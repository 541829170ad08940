"""Hostile Anthropic events relayed to a Messages client: the stream stays Anthropic's sequence, or fails cleanly.

The pass-through relays an Anthropic upstream's own events (checked and renumbered). Whatever JSON an
upstream puts in them, the client sees either a whole valid sequence (`messages_wire.check_events`)
or the translator's `UpstreamError` (which the relay turns into one error event): never another
exception, never a block left open, never an index out of order.
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.translate import StreamTranslator
from gateway.dialects import anthropic
from gateway.dialects.base import UpstreamError
from gateway.front.messages_encode import MessagesStream
from tests.messages_wire import check_events, parse_events
from tests.test_dialect_fuzz import values

start = {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [],
                                              "model": "x", "usage": {"input_tokens": 3, "output_tokens": 1}}}
kinds = st.sampled_from(["content_block_start", "content_block_delta", "content_block_stop", "message_delta",
                         "ping", "message_start"])
blocks = st.one_of(values, st.fixed_dictionaries({"type": st.sampled_from(["text", "thinking", "tool_use", "x"])},
                                                 optional={"text": values, "thinking": values, "id": values,
                                                           "name": values, "input": values}))
deltas = st.one_of(values, st.fixed_dictionaries(
    {"type": st.sampled_from(["text_delta", "thinking_delta", "signature_delta", "input_json_delta", "y"])},
    optional={"text": values, "thinking": values, "signature": values, "partial_json": values}))
events = st.lists(st.tuples(kinds, st.fixed_dictionaries({}, optional={
    "index": st.one_of(st.integers(0, 3), values), "content_block": blocks, "delta": deltas, "usage": values,
    "message": values})), max_size=10)


def _sse(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(middle=events, stop=st.booleans())
def test_any_relayed_events_are_a_valid_sequence_or_a_clean_failure(middle, stop):
    raw = _sse("message_start", {k: v for k, v in start.items() if k != "type"})
    raw += b"".join(_sse(name, data) for name, data in middle)
    if stop:
        raw += _sse("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}})
        raw += _sse("message_stop", {})
    translator = StreamTranslator(anthropic.stream_decoder(native=True), MessagesStream("msg_t", "r", 3))
    try:
        out = translator.feed(raw) + translator.end() + translator.finish()
    except UpstreamError:
        return
    check_events(parse_events(out), model="r")
