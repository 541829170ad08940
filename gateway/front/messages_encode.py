"""Neutral answers and deltas to Anthropic's `message` and its stream events.

Whatever the upstream, the client sees our `msg_` id, the route's canonical model
name, blocks indexed 0..n each started, delta'd and stopped in order, one
`message_delta` with the stop reason and usage, then `message_stop`. An Anthropic
upstream's own events (`Delta.native`) are relayed rather than rebuilt, so blocks
the neutral form has no words for (interleaved thinking, citations, server tools)
arrive as Anthropic sent them; each is still checked, renumbered and closed here,
because anything copied from an upstream is hostile.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.dialects.base import Completion, Delta, Usage
from gateway.errors import GatewayError, error_body
from gateway.front.base import estimate_usage
from gateway.front.thinktags import ThinkSplitter, split_whole
from gateway.scrub import Scrubber, shapes

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_REBUILT = frozenset({"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"})
_DELTA_REBUILT = frozenset({"type", "delta", "usage"})
_KNOWN_STOPS = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                          "model_context_window_exceeded"})
# Required string (or object) fields of the blocks and deltas clients parse; other types need only `type`.
_BLOCK_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "text": (("text", str),), "thinking": (("thinking", str),), "redacted_thinking": (("data", str),),
    "tool_use": (("id", str), ("name", str), ("input", dict)),
    "text_delta": (("text", str),), "thinking_delta": (("thinking", str),), "signature_delta": (("signature", str),),
    "input_json_delta": (("partial_json", str),)}


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def usage_block(usage: Usage) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from `input_tokens` (SPEC section 11)."""
    cached = usage.cached_tokens or 0
    written = usage.cache_write_tokens
    out: dict[str, Any] = {"input_tokens": max(usage.prompt_tokens - cached - (written or 0), 0),
                           "output_tokens": usage.completion_tokens}
    if written is not None:
        out["cache_creation_input_tokens"] = written
    if usage.cached_tokens is not None:
        out["cache_read_input_tokens"] = cached
    return out


def _checked(item: Any) -> dict[str, Any] | None:
    """A block or delta from an upstream if its fields have the types clients read, else None."""
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return None
    for name, kind in _BLOCK_FIELDS.get(item["type"], ()):
        if not isinstance(item.get(name), kind):
            return None
    return item


def _stop_reason(value: Any, finish: str | None) -> str:
    if isinstance(value, str) and value in _KNOWN_STOPS:
        return value
    return STOP_REASONS.get(finish or "stop", "end_turn")


def message_body(done: Completion, message_id: str, route: str, prompt: int) -> tuple[dict[str, Any], Usage, bool]:
    """The client's `message`, the usage to book, and whether it was estimated."""
    native = done.native[1] if done.native is not None and done.native[0] == "messages" else None
    extra: dict[str, Any] = {}
    if native is not None:
        extra = _extras(native, _REBUILT)   # `container`, say: as Anthropic said
        content = [b for b in map(_checked, native.get("content") or ()) if b is not None] \
            if isinstance(native.get("content"), list) else []
        stop, sequence = _stop_reason(native.get("stop_reason"), done.finish_reason), native.get("stop_sequence")
    else:
        content = _blocks(done)
        stop, sequence = STOP_REASONS.get(done.finish_reason, "end_turn"), None
    usage, estimated = done.usage, done.usage is None
    if usage is None:
        written = "".join(b.get("text", "") for b in content if b["type"] == "text") + "".join(
            orjson.dumps(b["input"]).decode() for b in content if b["type"] == "tool_use")
        reasoning = "".join(b.get("thinking", "") for b in content if b["type"] == "thinking")
        usage = estimate_usage(prompt, written, reasoning)
    said = _clean_usage(native.get("usage"), "input_tokens") if native is not None and not estimated else None
    body = {**extra, "id": message_id, "type": "message", "role": "assistant", "model": route, "content": content,
            "stop_reason": stop, "stop_sequence": sequence if isinstance(sequence, str) else None,
            "usage": said or usage_block(usage)}
    return body, usage, estimated


def _blocks(done: Completion) -> list[dict[str, Any]]:
    content, reasoning = done.content, done.reasoning
    if content:
        split, content = split_whole(content)
        if split is not None:
            reasoning = (reasoning or "") + split
    blocks: list[dict[str, Any]] = []
    if reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": done.signature or ""})
    text = (content or "") + (done.refusal or "")
    if text:
        blocks.append({"type": "text", "text": text})
    for i, call in enumerate(done.tool_calls or ()):
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_{i}", "name": fn.get("name") or "",
                       "input": _arguments(fn.get("arguments"))})
    return blocks


def _arguments(text: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; what is not a JSON object is {}."""
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class MessagesStream:
    """One streamed answer as Anthropic events: `push(delta)` and `finish()` return SSE bytes."""

    keepalive = event("ping", {"type": "ping"})

    def __init__(self, message_id: str, model: str, prompt_estimate: int):
        self._id, self._model, self._prompt = message_id, model, prompt_estimate
        self.usage: Usage | None = None
        self._finish: str | None = None
        self._started = self._ended = False
        self._next = 0                    # the next block index
        self._open: str | None = None     # the kind of the open block (neutral path)
        self._tools: dict[Any, int] = {}  # upstream tool call index -> our block index
        self._last_tool: Any = 0
        self._think = ThinkSplitter()
        self._text: list[str] = []        # what was streamed, for estimating usage
        self._reasoning: list[str] = []
        self._relayed: dict[Any, int] = {}   # upstream block index -> ours, while open (native path)
        self._native = False
        self._stop: tuple[Any, Any] | None = None
        self._stop_usage: dict[str, Any] | None = None   # the upstream's own message_delta usage (native)
        self._stop_extra: dict[str, Any] = {}   # and its other fields (`context_management`, say)
        self._text_head = b""

    # -- the StreamEncoder protocol ----------------------------------------------------------------
    def push(self, delta: Delta) -> bytes:
        """Most deltas of a stream are more text for the open text block, past any `<think>`: their event has
        one shape, made here from fixed bytes; `_push` would make the same bytes of them, and takes every other."""
        if delta.text_only and self._open == "text" and self._think.passing and not self._native:
            content = delta.content or ""
            self._text.append(content)
            return self._text_head + orjson.dumps(content) + b"}}\n\n"
        return self._push(delta)

    def _push(self, delta: Delta) -> bytes:
        if delta.native is not None:
            self._native = True
            return self._relay(delta.native)
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason and self._finish is None:
            self._finish = delta.finish_reason
        if self._native:
            return b""     # the relayed events said it already; the neutral deltas only count usage
        out: list[bytes] = []
        if delta.content:
            reasoning, content = self._think.feed(delta.content)
            self._thinking(out, reasoning)
            self._say(out, content)
        self._thinking(out, delta.reasoning)
        if delta.signature:
            if self._open != "thinking":
                self._begin(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta({"type": "signature_delta", "signature": delta.signature}))
        self._say(out, delta.refusal)
        for call in delta.tool_calls or ():
            self._tool(out, call)
        return b"".join(out)

    def finish(self) -> bytes:
        if self._ended:
            return b""
        out: list[bytes] = []
        reasoning, content = self._think.flush()
        self._thinking(out, reasoning)
        self._say(out, content)
        self._start(out)
        self._close(out)
        out.append(self._stop_relayed())
        raw_stop, sequence = self._stop or (None, None)
        out.append(event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(raw_stop, self._finish),
                      "stop_sequence": sequence if isinstance(sequence, str) else None},
            "usage": self._stop_usage or usage_block(self.final_usage()), **self._stop_extra}))
        out.append(event("message_stop", {"type": "message_stop"}))
        self._ended = True
        return b"".join(out)

    def fail(self, error: GatewayError, scrubber: Scrubber) -> bytes:
        """One `error` event; no `message_stop` follows."""
        return event("error", error_body(error, scrubber, "anthropic")[1])

    @property
    def usage_estimated(self) -> bool:
        return self.usage is None

    def final_usage(self) -> Usage:
        if self.usage is not None:
            return self.usage
        return estimate_usage(self._prompt, "".join(self._text), "".join(self._reasoning))

    # -- the neutral path --------------------------------------------------------------------------
    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            usage = {"input_tokens": self._prompt, "output_tokens": 0}
            out.append(self._message_start(usage))

    def _message_start(self, usage: dict[str, Any], relayed: dict[str, Any] | None = None) -> bytes:
        """Ours, with what else an Anthropic upstream said of the message (`container`, say) relayed."""
        message = {**_extras(relayed or {}, _REBUILT), "id": self._id, "type": "message", "role": "assistant",
                   "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return event("message_start", {"type": "message_start", "message": message})

    def _begin(self, out: list[bytes], kind: str, block: dict[str, Any]) -> None:
        self._start(out)
        self._close(out)
        out.append(event("content_block_start", {"type": "content_block_start", "index": self._next,
                                                 "content_block": block}))
        self._open = kind
        if kind == "text":   # what every text delta of this block starts with
            self._text_head = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                               + str(self._next).encode() + b',"delta":{"type":"text_delta","text":')

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(event("content_block_stop", {"type": "content_block_stop", "index": self._next}))
            self._open = None
            self._next += 1

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self._next, "delta": delta})

    def _thinking(self, out: list[bytes], text: str | None) -> None:
        if not text:
            return
        if self._open != "thinking":
            self._begin(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self._reasoning.append(text)
        out.append(self._delta({"type": "thinking_delta", "thinking": text}))

    def _say(self, out: list[bytes], text: str | None) -> None:
        if not text:
            return
        if self._open != "text":
            self._begin(out, "text", {"type": "text", "text": ""})
        self._text.append(text)
        out.append(self._delta({"type": "text_delta", "text": text}))

    def _tool(self, out: list[bytes], call: dict[str, Any]) -> None:
        """Tool calls in order, one block each; a fragment for a call already closed cannot be sent (none
        of the recorded upstreams interleave calls) and is counted, not lost, in the usage estimate."""
        key = call.get("index")
        if not isinstance(key, int):   # Mistral numbers no call: its id, or the call before, says which
            key = call.get("id") or self._last_tool
        self._last_tool = key
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        if key not in self._tools:
            self._begin(out, "tool", {"type": "tool_use", "id": call.get("id") or f"toolu_{self._next}",
                                      "name": fn.get("name") or "", "input": {}})
            self._tools[key] = self._next
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._text.append(arguments)
            if self._open == "tool" and self._tools[key] == self._next:
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))

    # -- the native path ---------------------------------------------------------------------------
    def _relay(self, data: dict[str, Any]) -> bytes:
        kind = data["type"]
        if kind == "message_start":
            if self._started:
                return b""
            self._started = True
            message: dict[str, Any] = data["message"] if isinstance(data.get("message"), dict) else {}
            usage = _clean_usage(message.get("usage"), "input_tokens")
            return self._message_start(usage or {"input_tokens": self._prompt, "output_tokens": 0}, message)
        if kind == "ping":
            return self.keepalive
        if not self._started:
            return b""       # nothing before message_start
        if kind == "content_block_start":
            block = _checked(data.get("content_block"))
            if block is None:
                return b""
            out = self._stop_relayed()   # one block at a time, as Anthropic streams them
            index, self._next = self._next, self._next + 1
            self._relayed[data.get("index")] = index
            return out + event(kind, {"type": kind, "index": index, "content_block": block})
        if kind == "content_block_delta":
            at = self._relayed.get(data.get("index"))
            delta = _checked(data.get("delta"))
            if at is None or delta is None:
                return b""
            return event(kind, {"type": kind, "index": at, "delta": delta})
        if kind == "content_block_stop":
            stopped = self._relayed.pop(data.get("index"), None)
            return b"" if stopped is None else event(kind, {"type": kind, "index": stopped})
        if kind == "message_delta":
            said: dict[str, Any] = data["delta"] if isinstance(data.get("delta"), dict) else {}
            self._stop = (said.get("stop_reason"), said.get("stop_sequence"))
            self._stop_usage = _clean_usage(data.get("usage"), "output_tokens")
            self._stop_extra = _extras(data, _DELTA_REBUILT)
            return b""       # said once, by finish(), with every open block stopped first
        return b""           # message_stop (finish() says it) and events no client knows

    def _stop_relayed(self) -> bytes:
        """Stop every relayed block the upstream left open."""
        out = b"".join(event("content_block_stop", {"type": "content_block_stop", "index": i})
                       for i in sorted(self._relayed.values()))
        self._relayed.clear()
        return out


def _extras(data: dict[str, Any], rebuilt: frozenset[str]) -> dict[str, Any]:
    """The fields of an upstream object the gateway does not rebuild (a beta feature's, say), relayed as
    Anthropic sent them, unless one holds something shaped like a key: those are dropped whole."""
    out = {}
    for k, v in data.items():
        if k in rebuilt or not isinstance(k, str):
            continue
        text = orjson.dumps(v).decode()
        if shapes(text) == text and shapes(k) == k:
            out[k] = v
    return out


def _clean_usage(usage: Any, needed: str) -> dict[str, Any] | None:
    """An upstream's usage object, if it has `needed`: its counts (whole numbers, or objects of them, such as
    `cache_creation`) and its word-like labels (`service_tier: "standard"`); nothing else is copied."""
    if not isinstance(usage, dict) or not _is_count(usage.get(needed)):
        return None
    out: dict[str, Any] = {}
    for k, v in usage.items():
        if not isinstance(k, str) or not _LABEL.fullmatch(k):
            continue
        if _is_count(v) or (isinstance(v, str) and _LABEL.fullmatch(v)) or _is_counts(v):
            out[k] = v
    return out


_LABEL = re.compile(r"[a-z][a-z0-9_]{0,47}")


def _is_counts(value: Any) -> bool:
    """An object of counts (`cache_creation: {"ephemeral_5m_input_tokens": 0, ...}`)."""
    return isinstance(value, dict) and bool(value) and all(
        isinstance(n, str) and _LABEL.fullmatch(n) and _is_count(c) for n, c in value.items())


def _is_count(value: Any) -> bool:
    return value.__class__ is int and 0 <= value < 2 ** 31
