"""The Anthropic Messages API dialect.

Owns every translation between the OpenAI chat-completions shape and
Anthropic's `/v1/messages`: the upstream request (built in `anthropic_request`), reading a whole
response, turning the typed stream events (`message_start`,
`content_block_delta`, ...) into neutral `Delta`s, and reading Anthropic error
bodies. Pure data in, data out: no I/O, no clock, no aiohttp.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.dialects.anthropic_request import build_native as build_native
from gateway.dialects.anthropic_request import build_request as build_request
from gateway.dialects.base import (
    Completion,
    Delta,
    SSEEvent,
    UpstreamError,
    Usage,
    checked_usage,
    largest_count,
)

name = "anthropic"
native_api: str | None = "messages"   # a `/v1/messages` body passes through, the model name aside
needs_base_url = True   # the routes.yaml provider must say where it is

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# ---------------------------------------------------------------- response

def _obj(value: Any) -> dict[str, Any]:
    """Hostile or broken upstreams send any JSON type anywhere: what is not an object reads as empty."""
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    """A token count, or 0 for anything that cannot be one (wrong type, negative, absurdly large)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 40
    return value if ok else 0


def parse_response(data: dict[str, Any]) -> Completion:
    if not isinstance(data, dict):
        raise UpstreamError("upstream answered with something that is not a message")
    texts: list[str] = []
    thoughts: list[str] = []
    signature = None
    tool_calls: list[dict[str, Any]] = []
    content = data.get("content")
    for block in map(_obj, content if isinstance(content, list) else ()):
        kind = block.get("type")
        if kind == "text":
            texts.append(_str(block.get("text")) or "")
        elif kind == "thinking":
            thoughts.append(_str(block.get("thinking")) or "")
            signature = _str(block.get("signature")) or signature
        elif kind == "tool_use":
            tool_calls.append({"id": _str(block.get("id")), "type": "function",
                               "function": {"name": _str(block.get("name")),
                                            "arguments": _dumps(block.get("input") or {})}})
    usage = data.get("usage")
    return Completion(
        content="".join(texts) if texts else None,
        reasoning="".join(thoughts) if thoughts else None,
        tool_calls=tool_calls or None,
        finish_reason=_finish_reason(data.get("stop_reason")),
        usage=_usage(usage) if isinstance(usage, dict) else None,
        signature=signature,
        native=("messages", data),
    )


def _finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _usage(u: dict[str, Any]) -> Usage:
    """Every input kind bills as prompt (SPEC 11): cache reads are `cached_tokens`, writes `cache_write_tokens`."""
    read, write = u.get("cache_read_input_tokens"), u.get("cache_creation_input_tokens")
    prompt = _int(u.get("input_tokens")) + _int(read) + _int(write)
    return checked_usage(prompt, u.get("output_tokens"), None, None if read is None else _int(read),
                         None if write is None else _int(write))


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def error_message(data: Any) -> str | None:
    """The message of an Anthropic error body `{"type": "error", "error": {...}}`."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        return err.get("message") or err.get("type") or None
    if isinstance(err, str):
        return err
    return data.get("message") if isinstance(data.get("message"), str) else None


# ---------------------------------------------------------------- stream

def stream_decoder(native: bool = False) -> AnthropicStreamDecoder:
    """`native`: each event also reaches the front as itself (a Messages client: pass-through)."""
    return AnthropicStreamDecoder(native)


class AnthropicStreamDecoder:
    """Turns Anthropic stream events into Deltas, one event at a time.

    Anthropic numbers content blocks (text, thinking, tool_use, server tools)
    together; OpenAI numbers only tool calls. So each tool_use block gets its
    own ordinal, and deltas for blocks we do not surface are ignored.
    """

    def __init__(self, native: bool = False) -> None:
        self._native = native
        self._tool_index: dict[int, int] = {}   # Anthropic block index -> tool call ordinal
        self._usage: dict[str, Any] = {}
        self._finished = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SSEEvent) -> list[Delta]:
        if self._done or not event.data.strip():
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent an unreadable stream event") from None
        if not isinstance(data, dict):
            return []
        kind: Any = event.event if event.event not in (None, "", "message") else data.get("type")   # any JSON
        handler = _HANDLERS.get(kind)     # ping, content_block_stop and unknown events carry nothing for us
        deltas = handler(self, data) if handler else []
        if self._native and isinstance(kind, str):
            data["type"] = kind
            deltas.insert(0, Delta(native=data))
        return deltas

    def finish(self) -> list[Delta]:
        """Nothing is buffered; a stream that ended early is visible as `done` staying False."""
        return []

    def _on_message_start(self, data: dict[str, Any]) -> list[Delta]:
        self._usage.update(_obj(_obj(data.get("message")).get("usage")))
        return []

    def _on_content_block_start(self, data: dict[str, Any]) -> list[Delta]:
        block = _obj(data.get("content_block"))
        kind = block.get("type")
        if kind == "text" and _str(block.get("text")):
            return [Delta(content=block["text"])]
        if kind == "thinking" and _str(block.get("thinking")):
            return [Delta(reasoning=block["thinking"])]
        if kind == "tool_use":
            ordinal = len(self._tool_index)
            index = data.get("index")
            self._tool_index[index if isinstance(index, int) else ordinal] = ordinal
            return [Delta(tool_calls=[{"index": ordinal, "id": _str(block.get("id")), "type": "function",
                                       "function": {"name": _str(block.get("name")), "arguments": ""}}])]
        return []

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[Delta]:
        delta = _obj(data.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and _str(delta.get("text")):
            return [Delta(delta["text"])]   # positional: about half the cost of a keyword, once per event
        if kind == "thinking_delta" and _str(delta.get("thinking")):
            return [Delta(reasoning=delta["thinking"])]
        if kind == "signature_delta" and _str(delta.get("signature")):
            return [Delta(signature=delta["signature"])]
        if kind == "input_json_delta" and _str(delta.get("partial_json")):
            index = data.get("index")
            ordinal = self._tool_index.get(index) if isinstance(index, int) else None
            if ordinal is not None:
                return [Delta(tool_calls=[{"index": ordinal,
                                           "function": {"arguments": delta["partial_json"]}}])]
        return []

    def _on_message_delta(self, data: dict[str, Any]) -> list[Delta]:
        """Usage here is cumulative, so it replaces what message_start said."""
        self._usage.update({k: v for k, v in _obj(data.get("usage")).items() if v is not None})
        stop_reason = _obj(data.get("delta")).get("stop_reason")
        if stop_reason and not self._finished:
            self._finished = True
            return [Delta(finish_reason=_finish_reason(stop_reason))]
        return []

    def _on_message_stop(self, data: dict[str, Any]) -> list[Delta]:
        self._done = True
        out = []
        if not self._finished:
            self._finished = True
            out.append(Delta(finish_reason="stop"))
        if self._usage:     # no usage at all: let the gateway estimate rather than book zeros
            out.append(Delta(usage=_usage(self._usage)))
        return out

    def _on_error(self, data: dict[str, Any]) -> list[Delta]:
        kind = _obj(data.get("error")).get("type")
        message = error_message(data) or "upstream stream error"
        if kind == "overloaded_error":
            raise UpstreamError(message, status=529, retryable=True)
        raise UpstreamError(message, status=502, retryable=False)


_HANDLERS: dict[str, Callable[[AnthropicStreamDecoder, dict[str, Any]], list[Delta]]] = {
    "message_start": AnthropicStreamDecoder._on_message_start,
    "content_block_start": AnthropicStreamDecoder._on_content_block_start,
    "content_block_delta": AnthropicStreamDecoder._on_content_block_delta,
    "message_delta": AnthropicStreamDecoder._on_message_delta,
    "message_stop": AnthropicStreamDecoder._on_message_stop,
    "error": AnthropicStreamDecoder._on_error,
}   # made once, not per event


def output_cap(sent: dict[str, Any]) -> int | None:
    """The most output tokens the upstream may bill for the body `build_request` made (None: no bound sent).

    Budget reservations are computed from this, after every dialect and `thinking` adjustment.
    """
    return largest_count(sent, "max_tokens")
