"""The pure stream translator: upstream bytes in, client events out.

SSE framing, then the target dialect's decoder (events -> neutral `Delta`s),
then the client API's encoder (`Delta`s -> event bytes). No I/O and no clock:
the relay feeds it what it reads, and tests feed it recordings.
"""
from __future__ import annotations

import logging

from gateway.core.sse import SSEDecoder
from gateway.dialects.base import StreamDecoder, UpstreamError
from gateway.front.base import StreamEncoder

log = logging.getLogger("gateway.core.translate")


def unreadable(exc: Exception) -> UpstreamError:
    """A dialect tripped on input no fixture had: the upstream's fault, never a 500."""
    log.warning("a dialect could not read an upstream answer: %s", type(exc).__name__)
    return UpstreamError("upstream sent an answer the gateway could not read")


class StreamTranslator:
    """One upstream stream: `feed(bytes)` and `end()` return client bytes; failures are `UpstreamError`."""

    __slots__ = ("sse", "decoder", "encoder", "events")

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder):
        self.sse, self.decoder, self.encoder = SSEDecoder(), decoder, encoder
        self.events = 0   # upstream data events so far (comments are not events)

    @property
    def done(self) -> bool:
        return self.decoder.done

    def feed(self, data: bytes) -> bytes:
        try:
            return self._feed(data)
        except UpstreamError:
            raise
        except Exception as exc:
            raise unreadable(exc) from None

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        push, decode = self.encoder.push, self.decoder.feed
        events = self.sse.feed(data)
        self.events += len(events)
        for event in events:
            for delta in decode(event):
                chunk = push(delta)
                if chunk:
                    out.append(chunk)
            if self.decoder.done:
                break
        return b"".join(out)

    def end(self) -> bytes:
        """Upstream closed: decode what is left; a stream that never said it was done is broken."""
        if self.decoder.done:
            return b""
        out = [self.feed(b"")]
        try:
            for event in self.sse.flush():
                for delta in self.decoder.feed(event):
                    out.append(self.encoder.push(delta))
            for delta in self.decoder.finish():
                out.append(self.encoder.push(delta))
        except UpstreamError:
            raise
        except Exception as exc:
            raise unreadable(exc) from None
        if not self.decoder.done:
            raise UpstreamError("upstream stream ended before it was complete", retryable=True)
        return b"".join(out)

    def finish(self) -> bytes:
        """The client's closing events (finish chunk, usage, end marker), once the upstream is done."""
        return self.encoder.finish()
