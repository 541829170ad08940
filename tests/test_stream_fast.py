"""The stream path's short ways for common events give exactly what the whole way gives.

SSE framing, the OpenAI decoder and each front's stream encoder take a shorter way for
the usual event (one `data:` line; some text and nothing else). Each is checked against
the whole way, on hostile input: odd line ends, NULs, invalid UTF-8, events of any shape.
"""
from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.sse import SSEDecoder
from gateway.dialects import openai
from gateway.dialects.base import Delta, SSEEvent, UpstreamError, Usage
from gateway.front import chat, messages, responses
from tests.test_dialect_fuzz import openai_events, values


class LineByLine(SSEDecoder):
    """The SSE rules one line at a time, as the decoder read every event before it had a short way."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        buf = self._buf + chunk
        if b"\r" in buf:
            if buf.endswith(b"\r"):
                self._pending_cr = True
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > self.max_event:
            raise UpstreamError(f"upstream sent a stream event over {self.max_event} bytes")
        events: list[SSEEvent] = []
        for raw in lines:
            self._line(raw, events)
        return events


PIECES = [b"data: ", b"data:", b"data", b"event: e", b"id: 1", b":", b": c", b" ", b"\n", b"\n\n", b"\r", b"\r\n",
          b'{"a":1}', b"[DONE]", b"x" * 30, b"\x00", b"\xff", b"\xe2\x82", "é\U0001F600".encode(), b"\xed\xa0\x80"]
# Whole lines too, so that events (one line or more, named or not, begun in one read and ended in the next) are common.
LINES = st.builds(lambda field, value, eol: field + value + eol,
                  st.sampled_from([b"data: ", b"data: ", b"data:", b"event: ", b": ", b"", b"data", b"retry: "]),
                  st.sampled_from([b"", b"x", b"[DONE]", b' {"a":"\xc3\xa9"}', b"\xff\x00", b"\xe2\x82", b"y" * 30]),
                  st.sampled_from([b"\n", b"\n", b"\n\n", b"\r\n", b"\r", b"\r\n\r\n"]))
VALUES = st.sampled_from([b"", b"x", b"[DONE]", b' {"a":"\xc3\xa9"}', b"\xff\x00", b"\xe2\x82", b"y" * 30, b"a\rb"])
# Named events (Anthropic, Responses): an `event: ` line, then a `data: ` line or two.
NAMED = st.builds(lambda field, name, value, more, eol: field + name + b"\ndata: " + value + more + eol,
                  st.sampled_from([b"event: ", b"event:"]), VALUES, VALUES,
                  st.sampled_from([b"", b"\ndata: z", b"\n: c", b"\r\n"]),
                  st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n"]))
# Each part ends a read or not, so events often begin in one read and end in another.
streams = st.lists(st.tuples(st.one_of(LINES, NAMED, st.sampled_from(PIECES)), st.booleans()), max_size=40)


def _decoded(decoder: SSEDecoder, pieces: list[bytes]) -> list[object]:
    out: list[object] = []
    try:
        for piece in pieces:
            out.append(decoder.feed(piece))
        out.append(decoder.flush())
    except UpstreamError as exc:
        out.append(exc.message)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(streams, st.sampled_from([20, 60, 4 * 1024 * 1024]))
def test_sse_short_way_gives_the_line_by_line_events(stream, bound):
    pieces, read = [], b""
    for part, ends in stream:
        read += part
        if ends:
            pieces.append(read)
            read = b""
    pieces.append(read)
    assert _decoded(SSEDecoder(bound), pieces) == _decoded(LineByLine(bound), pieces)


def test_sse_short_way_bounds_one_line_events():
    big = b"data: " + b"x" * 100 + b"\n\n"
    assert _decoded(SSEDecoder(100), [big]) == ["upstream sent a stream event over 100 bytes"]
    assert _decoded(SSEDecoder(106), [big]) == [[SSEEvent("x" * 100)], []]


anything = st.one_of(st.text(max_size=4), st.none(), values)
chunks = st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries(
    {"delta": st.fixed_dictionaries({"content": st.one_of(st.text(max_size=4), anything)}, optional={
        k: anything for k in ("role", "reasoning_content", "reasoning", "refusal", "tool_calls", "audio")})},
    optional={"index": st.sampled_from([0, 1, 0.0, False, None, "0"]), "finish_reason": st.sampled_from(
        [None, "", "stop", "eos", 1, []]), "logprobs": st.sampled_from([None, {}, {"content": []}, [], 0])}),
    min_size=1, max_size=2)}, optional={"usage": st.one_of(st.none(), values), "error": st.none()})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(openai_events, st.lists(chunks, max_size=6)))
def test_openai_short_way_gives_the_whole_way_deltas(events):
    decoder = openai.stream_decoder()
    for event in events:
        try:
            got: object = decoder.feed(SSEEvent(json.dumps(event)))
        except UpstreamError as exc:
            got = exc.message
        if isinstance(event, dict) and event.get("error") is None:
            assert got == openai._deltas(orjson.loads(json.dumps(event)))


texts = st.one_of(st.none(), st.sampled_from(["", " ", "<think>", "</think>", "<th", "hi", "\ud800"]),
                  st.text(max_size=6))
# Text with nothing else (as most deltas of a stream), text with one other field, or any mix of fields.
CALL = [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]
SOME = {"reasoning": st.sampled_from(["r", "\ud800"]), "refusal": st.sampled_from(["no", " "]),
        "signature": st.just("sig"), "tool_calls": st.just(CALL), "finish_reason": st.sampled_from(["stop", "length"]),
        "logprobs": st.sampled_from([{}, {"content": []}]), "usage": st.just(Usage(1, 2)),
        "native": st.sampled_from([{"type": "ping"}, {"type": "response.created"}])}
ANY = {"reasoning": texts, "refusal": texts, "signature": st.sampled_from([None, "", "sig"]),
       "tool_calls": st.sampled_from([None, [], CALL]), "finish_reason": st.sampled_from([None, "", "stop", "length"]),
       "logprobs": st.one_of(st.none(), values), "usage": st.sampled_from([None, Usage(1, 2)]),
       "native": st.sampled_from([None, {"type": "ping"}, {"type": "response.created"}])}
words = st.one_of(st.sampled_from(["hi", " there", "."]), texts)
deltas = st.one_of(
    st.builds(Delta, words),
    st.sampled_from(sorted(SOME)).flatmap(lambda name: st.builds(lambda text, value: Delta(text, **{name: value}),
                                                                  words, SOME[name])),
    st.fixed_dictionaries({"content": words}, optional=ANY).map(lambda fields: Delta(**fields)))


ENCODERS = {"chat": chat.stream_encoder, "messages": messages.stream_encoder, "responses": responses.stream_encoder}


def _outcome(step, *args):
    """The bytes, or the kind of error (a lone surrogate cannot be JSON): both ways must agree on either."""
    try:
        return step(*args)
    except orjson.JSONEncodeError as exc:
        return type(exc)


@pytest.mark.parametrize("front", ENCODERS)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=st.lists(deltas, max_size=8))
def test_encoder_short_way_gives_the_whole_way_bytes(front, stream):
    fast, whole = (ENCODERS[front]("r", 1, "m", True, 3) for _ in range(2))
    for delta in stream:
        assert _outcome(fast.push, delta) == _outcome(whole._push, delta)  # type: ignore[attr-defined]
    assert _outcome(fast.finish) == _outcome(whole.finish)
    assert fast.final_usage() == whole.final_usage()
