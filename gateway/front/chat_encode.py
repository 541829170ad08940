"""Turns provider-neutral `Delta`s into clean OpenAI chunks and completions.

Whatever the dialect, the client sees one id and created time, the route's
canonical model name, the role first, reasoning only as `reasoning_content`,
exactly one finish_reason, and usage only when it asked (SPEC section 5).
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.base import Completion, Delta, Usage
from gateway.errors import GatewayError, error_body
from gateway.front.base import estimate_usage
from gateway.front.thinktags import ThinkSplitter, split_whole
from gateway.scrub import Scrubber


def usage_dict(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                           "total_tokens": usage.prompt_tokens + usage.completion_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if usage.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


class ChunkBuilder:
    """One per streamed answer: `push(delta)` and `finish()` return SSE bytes."""

    keepalive = b": keep-alive\n\n"   # an SSE comment: every client skips it

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool,
                 prompt_estimate: int):
        self._head = (b'data: {"id":' + orjson.dumps(completion_id) + b',"object":"chat.completion.chunk","created":'
                      + str(created).encode() + b',"model":' + orjson.dumps(model) + b',')
        self._content = self._head + b'"choices":[{"index":0,"delta":{"content":'
        self.include_usage = include_usage
        self.prompt_estimate = prompt_estimate
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.sent_role = False
        self._think = ThinkSplitter()
        self._tool_ids: dict[Any, int] = {}   # the ids as the upstream sent them
        self._last_tool_index = -1
        self._argued: dict[int, bool] = {}   # tool call index -> whether any arguments text came for it
        self._text: list[str] = []          # what was streamed, for estimating usage
        self._reasoning_chars = 0
        self.reasoning_text: list[str] = []

    # -- public -----------------------------------------------------------
    def push(self, delta: Delta) -> bytes:
        """Most deltas of a stream are more text, after the role and past any `<think>`: their chunk has one
        shape, made here from fixed bytes; `_push` would make the same bytes of them, and takes every other."""
        if delta.text_only and self._think.passing and self.sent_role:
            content = delta.content or ""
            self._text.append(content)
            return self._content + orjson.dumps(content) + b'},"finish_reason":null}]}\n\n'
        return self._push(delta)

    def _push(self, delta: Delta) -> bytes:
        if delta.usage is not None:
            self.usage = delta.usage
        out: dict[str, Any] = {}
        if delta.content:
            reasoning, content = self._think.feed(delta.content)
            self._add_reasoning(out, reasoning)
            if content:
                out["content"] = content
                self._text.append(content)
        self._add_reasoning(out, delta.reasoning)
        if delta.refusal:
            out["refusal"] = delta.refusal
            self._text.append(delta.refusal)
        if delta.tool_calls:
            out["tool_calls"] = [self._tool_call(call) for call in delta.tool_calls]
        if delta.signature:
            out["reasoning_signature"] = delta.signature
        if delta.finish_reason and self.finish_reason is None:
            self._flush_think(out)
            self.finish_reason = delta.finish_reason
            return self._closing(out, delta.finish_reason, delta.logprobs)
        if not out and delta.logprobs is None:
            return b""
        return self._chunk(out, None, delta.logprobs)

    def finish(self) -> bytes:
        """The closing finish chunk (if none came), the usage chunk if asked, and [DONE]."""
        out: dict[str, Any] = {}
        self._flush_think(out)
        parts = []
        if self.finish_reason is None:
            self.finish_reason = "tool_calls" if self._tool_ids or self._last_tool_index >= 0 else "stop"
            parts.append(self._closing(out, self.finish_reason, None))
        elif out:
            parts.append(self._chunk(out, None, None))
        if self.include_usage:
            usage = orjson.dumps(usage_dict(self.final_usage()))
            parts.append(self._head + b'"choices":[],"usage":' + usage + b"}\n\n")
        parts.append(b"data: [DONE]\n\n")
        return b"".join(parts)

    def fail(self, error: GatewayError, scrubber: Scrubber) -> bytes:
        """The one last event of a stream that failed after it started (no `[DONE]` follows)."""
        return b"data: " + orjson.dumps(error_body(error, scrubber)[1]) + b"\n\n"

    @property
    def usage_estimated(self) -> bool:
        return self.usage is None

    def final_usage(self) -> Usage:
        """Upstream usage when given, else an estimate from what was streamed."""
        if self.usage is not None:
            return self.usage
        return estimate_usage(self.prompt_estimate, "".join(self._text), "".join(self.reasoning_text))

    # -- internals --------------------------------------------------------
    def _add_reasoning(self, out: dict[str, Any], text: str | None) -> None:
        if text:
            out["reasoning_content"] = out.get("reasoning_content", "") + text
            self.reasoning_text.append(text)

    def _flush_think(self, out: dict[str, Any]) -> None:
        reasoning, content = self._think.flush()
        self._add_reasoning(out, reasoning)
        if content:
            out["content"] = out.get("content", "") + content
            self._text.append(content)

    def _closing(self, out: dict[str, Any], finish: str, logprobs: dict[str, Any] | None) -> bytes:
        """The finish chunk. A tool call that got no arguments text at all (Anthropic's `tool_use` with an
        empty `input` and no `input_json_delta`) gets "{}" first, in a chunk of its own: clients parse it."""
        empty = [i for i, argued in self._argued.items() if not argued]
        if not empty:
            return self._chunk(out, finish, logprobs)
        head = self._chunk(out, None, logprobs) if out or logprobs is not None else b""
        self._argued.update(dict.fromkeys(empty, True))
        fill = [{"index": i, "function": {"arguments": "{}"}} for i in empty]
        self._text.append("{}" * len(empty))
        return head + self._chunk({"tool_calls": fill}, None, None) + self._chunk({}, finish, None)

    def _tool_call(self, call: dict[str, Any]) -> dict[str, Any]:
        """Give every fragment an index (Mistral sends none) and the first a type."""
        call = dict(call)
        call_id = call.get("id")
        if "index" not in call or call["index"] is None:
            if call_id is not None and call_id not in self._tool_ids:
                call["index"] = len(self._tool_ids)
            else:
                call["index"] = self._tool_ids.get(call_id, max(self._last_tool_index, 0))
        if call_id is not None:
            self._tool_ids.setdefault(call_id, call["index"])
            call.setdefault("type", "function")
        self._last_tool_index = call["index"]
        fn = call.get("function")
        arguments = fn.get("arguments") if isinstance(fn, dict) else None
        if isinstance(arguments, str):
            self._text.append(arguments)
        if isinstance(call["index"], int):
            self._argued[call["index"]] = self._argued.get(call["index"], False) or bool(
                isinstance(arguments, str) and arguments.strip())
        return call

    def _chunk(self, delta: dict[str, Any], finish: str | None, logprobs: dict[str, Any] | None) -> bytes:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            # as OpenAI does: "" opens a text answer, null a tool call or refusal
            delta.setdefault("content", None if "tool_calls" in delta or "refusal" in delta else "")
            self.sent_role = True
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return self._head + b'"choices":' + orjson.dumps([choice]) + b"}\n\n"


def _with_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """A function call without arguments text says "{}", as OpenAI does: clients json.loads it."""
    fn = call.get("function")
    if not isinstance(fn, dict) or (isinstance(fn.get("arguments"), str) and fn["arguments"].strip()):
        return call
    return {**call, "function": {**fn, "arguments": "{}"}}


def completion_body(done: Completion, completion_id: str, created: int, model: str,
                    prompt_estimate: int) -> tuple[dict[str, Any], Usage, bool]:
    """The client's `chat.completion`, the usage to book, and whether it was estimated."""
    content, reasoning = done.content, done.reasoning
    if content:
        split_reasoning, content = split_whole(content)
        if split_reasoning is not None:
            reasoning = (reasoning or "") + split_reasoning
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": done.refusal}
    if reasoning:
        message["reasoning_content"] = reasoning
    if done.signature:
        message["reasoning_signature"] = done.signature
    if done.tool_calls:
        message["tool_calls"] = [_with_arguments(call) for call in done.tool_calls]
    usage, estimated = done.usage, done.usage is None
    if usage is None:
        args = "".join(fn["arguments"] for c in message.get("tool_calls") or ()
                       if isinstance(fn := c.get("function"), dict) and isinstance(fn.get("arguments"), str))
        usage = estimate_usage(prompt_estimate, (content or "") + (done.refusal or "") + args, reasoning)
    body = {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": done.logprobs,
                         "finish_reason": done.finish_reason}],
            "usage": usage_dict(usage)}
    return body, usage, estimated
