"""Incremental Server-Sent Events decoding and encoding (no I/O).

The decoder takes bytes as they arrive, in pieces of any size, and yields
whole events; it follows the SSE rules for `\\n`, `\\r\\n` and `\\r` line ends,
comments, multi-line `data:` and blank-line dispatch.
"""
from __future__ import annotations

from gateway.dialects.base import SSEEvent, UpstreamError

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
MAX_EVENT_BYTES = 4 * 1024 * 1024   # far above any real event; bounds memory against a hostile upstream


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_event", "_pending_cr", "_size", "max_event")

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._pending_cr = False
        self._size = 0
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []  # an empty read must not forget a pending \r
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across reads
        self._pending_cr = False
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            if buf.endswith(b"\r"):
                self._pending_cr = True
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buf.split(b"\n\n")   # the lines of each, then one blank line
        lines = blocks.pop().split(b"\n")   # lines of an event still coming, then a part line
        self._buf = lines.pop()
        limit = self.max_event
        if len(self._buf) > limit:
            raise oversized(limit)
        events: list[SSEEvent] = []
        line = self._line
        for block in blocks:
            # Nearly every event is one `data: ` line, or (Anthropic, Responses) an `event: ` line and one
            # `data: ` line: those skip the line-by-line rules, which give the same event. Any other block,
            # and one that goes on an event begun in an earlier read, goes line by line.
            if not self._data and self._event is None:
                if block[:6] == b"data: " and 0x0A not in block:   # \n
                    if len(block) > limit:
                        raise oversized(limit)
                    events.append(SSEEvent(block[6:].decode("utf-8", "replace")))
                    continue
                if block[:7] == b"event: ":
                    name, _, data = block.partition(b"\n")
                    if data[:6] == b"data: " and 0x0A not in data:
                        if len(data) > limit:
                            raise oversized(limit)
                        text = data[6:].decode("utf-8", "replace")
                        events.append(SSEEvent(text, name[7:].decode("utf-8", "replace")))
                        continue
            for raw in block.split(b"\n"):
                line(raw, events)
            line(b"", events)
        for raw in lines:
            line(raw, events)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line still counts."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf, events)
            self._buf = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not raw:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event))
            self._data = []
            self._size = 0
            self._event = None
            return
        if raw[0] == 0x3A:  # ':' comment
            return
        name, sep, value = raw.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", "replace")
        if name == b"data":
            self._size += len(raw)
            if self._size > self.max_event:
                raise oversized(self.max_event)
            self._data.append(text)
        elif name == b"event":
            self._event = text


def oversized(limit: int) -> UpstreamError:
    return UpstreamError(f"upstream sent a stream event over {limit} bytes")


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"
