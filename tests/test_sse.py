"""The incremental SSE decoder (gateway/core/sse.py): line endings, comments, fields, and splits.

Upstream bytes arrive in pieces of any size, so every property is checked with
the input whole, split in two at every byte offset, and fed one byte at a time.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.sse import DONE, KEEPALIVE, SSEDecoder, encode_data
from gateway.dialects.base import SSEEvent

RECORDED = sorted((Path(__file__).parent / "fixtures" / "upstream").glob("*/*.sse"))


def decode(*pieces: bytes, flush: bool = True) -> list[SSEEvent]:
    dec = SSEDecoder()
    out = [e for piece in pieces for e in dec.feed(piece)]
    return out + dec.flush() if flush else out


def every_split(raw: bytes) -> list[tuple[bytes, ...]]:
    """The input whole, in two pieces at every offset, and one byte at a time."""
    splits = [(raw,)] + [(raw[:cut], raw[cut:]) for cut in range(1, len(raw))]
    return [*splits, tuple(raw[i:i + 1] for i in range(len(raw)))]


def check_all_splits(raw: bytes, expected: list[SSEEvent]) -> None:
    for pieces in every_split(raw):
        assert decode(*pieces) == expected, pieces


TWO_EVENTS = [SSEEvent('{"a":1}'), SSEEvent("second", "ping")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending(eol):
    raw = b"data: {\"a\":1}" + eol + eol + b"event: ping" + eol + b"data: second" + eol + eol
    assert decode(raw, flush=False) == TWO_EVENTS
    check_all_splits(raw, TWO_EVENTS)


def test_mixed_line_endings_in_one_stream():
    raw = b"data: {\"a\":1}\r\n\nevent: ping\rdata: second\n\r"
    check_all_splits(raw, TWO_EVENTS)


def test_crlf_split_across_reads_is_one_line_end():
    # "\r" ends a line at once; the "\n" of the next read must not count as a blank line
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n", flush=False) == [SSEEvent("a\nb")]
    assert decode(b"data: a\r", b"\n", b"\r", b"\n", flush=False) == [SSEEvent("a")]


def test_cr_then_empty_read_then_lf_is_still_one_line_end():
    assert decode(b"data: a\r", b"", b"\ndata: b\n\n", flush=False) == [SSEEvent("a\nb")]


def test_comments_are_ignored_and_do_not_end_events():
    raw = b": keep-alive\n\ndata: x\n: a comment inside an event\ndata: y\n\n:\n\n: OPENROUTER PROCESSING\n\n"
    check_all_splits(raw, [SSEEvent("x\ny")])


def test_multi_line_data_joins_with_newlines():
    raw = b"data: line one\ndata:line two\ndata:  two spaces\ndata\n\n"
    check_all_splits(raw, [SSEEvent("line one\nline two\n two spaces\n")])


def test_blank_lines_alone_dispatch_nothing():
    check_all_splits(b"\n\n\r\n\r\r\n", [])


def test_event_name_without_data_is_not_dispatched_and_does_not_leak():
    raw = b"event: orphan\n\ndata: x\n\n"
    check_all_splits(raw, [SSEEvent("x")])


def test_unknown_fields_id_and_retry_are_ignored():
    raw = b"id: 7\nretry: 1000\nfoo: bar\ndata: x\n\n"
    check_all_splits(raw, [SSEEvent("x")])


def test_empty_data_line_is_an_event_with_empty_data():
    check_all_splits(b"data:\n\n", [SSEEvent("")])


def test_multibyte_utf8_split_inside_a_character():
    raw = "data: ÷ 925 \U0001F600\n\n".encode()
    check_all_splits(raw, [SSEEvent("÷ 925 \U0001F600")])


def test_flush_dispatches_a_last_event_without_blank_line():
    assert decode(b"data: last", flush=False) == []
    assert decode(b"data: last") == [SSEEvent("last")]
    assert decode(b"event: e\ndata: last\n") == [SSEEvent("last", "e")]
    assert decode(b"data: [DONE]\r") == [SSEEvent("[DONE]")]
    check_all_splits(b"data: a\n\ndata: last", [SSEEvent("a"), SSEEvent("last")])


def test_flush_on_an_empty_or_finished_stream_gives_nothing():
    assert decode() == []
    assert decode(b"data: a\n\n") == [SSEEvent("a")]
    dec = SSEDecoder()
    dec.feed(b"data: a\n\n")
    assert dec.flush() == [] and dec.flush() == []


def test_decoder_is_reusable_after_each_event():
    dec = SSEDecoder()
    got = []
    for n in range(50):
        got += dec.feed(f"event: e{n}\ndata: {n}\n\n".encode())
    assert got == [SSEEvent(str(n), f"e{n}") for n in range(50)]


def test_encoder_output_decodes_back():
    payload = b'{"x":"a\\nb"}'
    assert decode(encode_data(payload) + KEEPALIVE + DONE) == [SSEEvent(payload.decode()), SSEEvent("[DONE]")]


def _event_blocks(raw: bytes) -> list[bytes]:
    """The recorded stream cut after each blank line (all recordings use LF)."""
    blocks, start = [], 0
    while (end := raw.find(b"\n\n", start)) >= 0:
        blocks.append(raw[start:end + 2])
        start = end + 2
    return blocks + ([raw[start:]] if start < len(raw) else [])


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recorded_streams_split_at_every_offset(path):
    """A split can only matter to the event it falls in: the decoder holds no state between events.

    So splitting each event at each of its offsets covers every offset of the whole
    stream, at the cost of one event per cut rather than the whole file.
    """
    raw = path.read_bytes()
    assert b"\r" not in raw
    whole = decode(raw)
    assert whole and whole == decode(*(raw[i:i + 1] for i in range(len(raw))))
    done = []
    for block in _event_blocks(raw):
        expected = decode(block)
        assert len(expected) <= 1
        done += expected
        for cut in range(1, len(block)):
            assert decode(block[:cut], block[cut:]) == expected, (block, cut)
    assert done == whole


def test_an_event_over_the_bound_is_refused():
    import pytest

    from gateway.core.sse import SSEDecoder
    from gateway.dialects.base import UpstreamError

    decoder = SSEDecoder(max_event=1000)
    with pytest.raises(UpstreamError):
        for _ in range(20):
            decoder.feed(b"data: " + b"x" * 100)          # one line that never ends
    decoder = SSEDecoder(max_event=1000)
    with pytest.raises(UpstreamError):
        decoder.feed(b"".join(b"data: " + b"y" * 90 + b"\n" for _ in range(20)))   # many lines, one event
    decoder = SSEDecoder(max_event=1000)
    assert len(decoder.feed(b"".join(b"data: " + b"z" * 90 + b"\n\n" for _ in range(20)))) == 20
