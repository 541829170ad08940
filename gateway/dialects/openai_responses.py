"""The OpenAI Responses API dialect (`base_url` + `/responses`).

Owns every translation between the neutral shapes and OpenAI's Responses API: the upstream
request (built in `openai_responses_request`), reading a whole `response` object, turning the typed
stream events (`response.output_text.delta`, `response.function_call_arguments.delta`, ...) into
neutral `Delta`s, and reading Responses error bodies. A `/v1/responses` client's body passes
through as is (`native_api`). Pure data in, data out: no I/O, no clock, no aiohttp.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.dialects.base import (
    Completion,
    Delta,
    SSEEvent,
    UpstreamError,
    Usage,
    checked_usage,
    largest_count,
)
from gateway.dialects.openai_responses_request import build_native as build_native
from gateway.dialects.openai_responses_request import build_request as build_request

name = "openai-responses"
native_api: str | None = "responses"   # a `/v1/responses` body passes through, the model name aside
needs_base_url = True   # the routes.yaml provider must say where it is

INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
RATE_LIMITED = frozenset({"rate_limit_exceeded", "rate_limit_error", "tokens_per_min", "requests_per_min"})
OVERLOADED = frozenset({"server_is_overloaded", "overloaded_error", "slow_down", "engine_overloaded"})
SEPARATOR = "\n\n"   # between two message items' texts, or two reasoning summary parts


def _obj(value: Any) -> dict[str, Any]:
    """Hostile or broken upstreams send any JSON type anywhere: what is not an object reads as empty."""
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- errors and usage

def error_message(data: Any) -> str | None:
    """The message of a Responses error: `{"error": {...}}` (a body, a failed response), or an `error`
    stream event with its fields at the top."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        return _str(err.get("message")) or _str(err.get("code")) or _str(err.get("type")) or "upstream error"
    if isinstance(err, str):
        return err
    if data.get("type") == "error":
        return _str(data.get("message")) or _str(data.get("code")) or "upstream stream error"
    return None


def _failure(data: dict[str, Any], fallback: str) -> UpstreamError:
    """An upstream failure as the gateway's error: retried where the upstream says it is busy."""
    err = _obj(data.get("error")) or data
    kinds = {k for k in (err.get("code"), err.get("type")) if isinstance(k, str)}
    message = error_message({"error": err}) or fallback
    if kinds & RATE_LIMITED:
        return UpstreamError(message, status=429, retryable=True)
    if kinds & OVERLOADED:
        return UpstreamError(message, status=503, retryable=True)
    return UpstreamError(message, status=502, retryable=False)


def parse_usage(raw: Any) -> Usage | None:
    """`input_tokens` counts cached ones too (`input_tokens_details.cached_tokens` says how many);
    checked by `checked_usage` before any budget or ledger sees it."""
    if not isinstance(raw, dict):
        return None
    inputs, outputs = _obj(raw.get("input_tokens_details")), _obj(raw.get("output_tokens_details"))
    return checked_usage(raw.get("input_tokens"), raw.get("output_tokens"), outputs.get("reasoning_tokens"),
                         inputs.get("cached_tokens"), inputs.get("cache_write_tokens"))


def _finish(response: dict[str, Any], called: bool) -> str:
    """`status` and `incomplete_details.reason` as a chat finish reason."""
    if response.get("status") == "incomplete":
        reason = _obj(response.get("incomplete_details")).get("reason")
        return INCOMPLETE.get(reason, "length") if isinstance(reason, str) else "length"
    return "tool_calls" if called else "stop"


# ---------------------------------------------------------------- whole answers

def parse_response(data: Any) -> Completion:
    if not isinstance(data, dict):
        raise UpstreamError("upstream answered with something that is not a response")
    if data.get("status") == "failed" or isinstance(data.get("error"), (dict, str)):
        raise _failure(data, "upstream response failed")
    texts: list[str] = []
    thoughts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    signature = None
    for item in map(_obj, _list(data.get("output"))):
        kind = item.get("type")
        if kind == "message":
            parts = [_obj(p) for p in _list(item.get("content"))]
            text = "".join(_str(p.get("text")) or "" for p in parts if p.get("type") == "output_text")
            if text:
                texts.append(text)
            refusals += [r for p in parts if p.get("type") == "refusal" and (r := _str(p.get("refusal")))]
        elif kind == "reasoning":
            thoughts += [t for p in map(_obj, _list(item.get("summary"))) if (t := _str(p.get("text")))]
            thoughts += [t for p in map(_obj, _list(item.get("content"))) if (t := _str(p.get("text")))]
            signature = _str(item.get("encrypted_content")) or signature
        elif kind == "function_call":
            arguments = item.get("arguments")
            calls.append({"id": _str(item.get("call_id")) or _str(item.get("id")), "type": "function",
                          "function": {"name": _str(item.get("name")),
                                       "arguments": arguments if isinstance(arguments, str)
                                       else orjson.dumps(arguments or {}).decode()}})
    return Completion(content=SEPARATOR.join(texts) if texts else None,
                      reasoning=SEPARATOR.join(thoughts) if thoughts else None,
                      refusal="".join(refusals) or None, tool_calls=calls or None,
                      finish_reason=_finish(data, bool(calls)), usage=parse_usage(data.get("usage")),
                      signature=signature, native=("responses", data))


# ---------------------------------------------------------------- stream

def stream_decoder(native: bool = False) -> ResponsesStreamDecoder:
    """`native`: each event also reaches the front as itself (a Responses client: pass-through)."""
    return ResponsesStreamDecoder(native)


class ResponsesStreamDecoder:
    """Turns Responses stream events into Deltas, one event at a time.

    Responses numbers every output item (reasoning, message, function call) by `output_index`;
    chat numbers only tool calls. So each function call gets its own ordinal, found again by its
    `item_id` (or `output_index`) when its argument fragments arrive.
    """

    __slots__ = ("_native", "_calls", "_count", "_streamed", "_text_item", "_summary", "_said", "_thought", "_done")

    def __init__(self, native: bool = False) -> None:
        self._native = native
        self._calls: dict[str | int, int] = {}   # item id and output index -> tool call ordinal
        self._count = 0                      # tool calls so far
        self._streamed: set[int] = set()     # ordinals whose arguments arrived as fragments
        self._text_item: Any = None          # the message item text last came from
        self._summary: Any = None            # the (item, summary part) reasoning last came from
        self._said = False                   # any text yet (a second message item is set apart)
        self._thought = False                # any reasoning yet
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SSEEvent) -> list[Delta]:
        if self._done or not event.data.strip() or event.data == "[DONE]":
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent an unreadable stream event") from None
        if not isinstance(data, dict):
            raise UpstreamError("upstream sent a malformed stream event")
        kind = data.get("type") if isinstance(data.get("type"), str) else event.event
        if not kind:
            return []
        data["type"] = kind
        handler = _HANDLERS.get(kind)
        deltas = handler(self, data) if handler else []   # created, in_progress, *.done, ... carry nothing for us
        if self._native:
            deltas.insert(0, Delta(native=data))
        return deltas

    def finish(self) -> list[Delta]:
        """Nothing is buffered; a stream that ended early is visible as `done` staying False."""
        return []

    def _text(self, data: dict[str, Any]) -> list[Delta]:
        text = _str(data.get("delta"))
        if not text:
            return []
        item = data.get("item_id", data.get("output_index"))
        if self._said and item != self._text_item:
            text = SEPARATOR + text
        self._said, self._text_item = True, item
        return [Delta(text)]   # positional: about half the cost of a keyword, once per event

    def _reasoning(self, data: dict[str, Any]) -> list[Delta]:
        text = _str(data.get("delta"))
        if not text:
            return []
        part = (_hashable(data.get("item_id")), _hashable(data.get("summary_index", data.get("content_index"))))
        if self._thought and part != self._summary:
            text = SEPARATOR + text
        self._thought, self._summary = True, part
        return [Delta(reasoning=text)]

    def _refusal(self, data: dict[str, Any]) -> list[Delta]:
        text = _str(data.get("delta"))
        return [Delta(refusal=text)] if text else []

    def _item_added(self, data: dict[str, Any]) -> list[Delta]:
        item = _obj(data.get("item"))
        if item.get("type") != "function_call":
            return []
        return [self._call_started(data, item)]

    def _call_started(self, data: dict[str, Any], item: dict[str, Any]) -> Delta:
        ordinal, self._count = self._count, self._count + 1
        for key in (_hashable(item.get("id")), _hashable(data.get("output_index"))):
            if key is not None:
                self._calls[key] = ordinal
        arguments = _str(item.get("arguments")) or ""
        return Delta(tool_calls=[{"index": ordinal, "id": _str(item.get("call_id")) or _str(item.get("id")),
                                  "type": "function",
                                  "function": {"name": _str(item.get("name")), "arguments": arguments}}])

    def _arguments(self, data: dict[str, Any]) -> list[Delta]:
        fragment = _str(data.get("delta"))
        ordinal = self._ordinal(data)
        if not fragment or ordinal is None:
            return []
        self._streamed.add(ordinal)
        return [Delta(tool_calls=[{"index": ordinal, "function": {"arguments": fragment}}])]

    def _arguments_done(self, data: dict[str, Any]) -> list[Delta]:
        """Some servers send the arguments only whole, at the end."""
        whole, ordinal = _str(data.get("arguments")), self._ordinal(data)
        if not whole or ordinal is None or ordinal in self._streamed:
            return []
        self._streamed.add(ordinal)
        return [Delta(tool_calls=[{"index": ordinal, "function": {"arguments": whole}}])]

    def _item_done(self, data: dict[str, Any]) -> list[Delta]:
        item = _obj(data.get("item"))
        kind = item.get("type")
        if kind == "reasoning" and _str(item.get("encrypted_content")):
            return [Delta(signature=item["encrypted_content"])]
        if kind == "function_call" and self._ordinal({"item_id": item.get("id"), **data}) is None:
            self._streamed.add(self._count)     # never announced: the whole call at once
            return [self._call_started(data, item)]
        return []

    def _ordinal(self, data: dict[str, Any]) -> int | None:
        for key in (_hashable(data.get("item_id")), _hashable(data.get("output_index"))):
            if key is not None and key in self._calls:
                return self._calls[key]
        return None

    def _ended(self, data: dict[str, Any]) -> list[Delta]:
        """response.completed or response.incomplete: the finish reason, then the usage (when given)."""
        self._done = True
        response = _obj(data.get("response"))
        if data.get("type") == "response.incomplete" and response.get("status") != "incomplete":
            response = {**response, "status": "incomplete"}
        out = [Delta(finish_reason=_finish(response, self._count > 0))]
        usage = parse_usage(response.get("usage"))
        if usage is not None:   # no usage at all: let the gateway estimate rather than book zeros
            out.append(Delta(usage=usage))
        return out

    def _failed(self, data: dict[str, Any]) -> list[Delta]:
        raise _failure(_obj(data.get("response")), "upstream response failed")

    def _error(self, data: dict[str, Any]) -> list[Delta]:
        raise _failure(data, "upstream stream error")


_HANDLERS: dict[str, Callable[[ResponsesStreamDecoder, dict[str, Any]], list[Delta]]] = {
    "response.output_text.delta": ResponsesStreamDecoder._text,
    "response.refusal.delta": ResponsesStreamDecoder._refusal,
    "response.reasoning_summary_text.delta": ResponsesStreamDecoder._reasoning,
    "response.reasoning_text.delta": ResponsesStreamDecoder._reasoning,
    "response.output_item.added": ResponsesStreamDecoder._item_added,
    "response.function_call_arguments.delta": ResponsesStreamDecoder._arguments,
    "response.function_call_arguments.done": ResponsesStreamDecoder._arguments_done,
    "response.output_item.done": ResponsesStreamDecoder._item_done,
    "response.completed": ResponsesStreamDecoder._ended,
    "response.incomplete": ResponsesStreamDecoder._ended,
    "response.failed": ResponsesStreamDecoder._failed,
    "error": ResponsesStreamDecoder._error,
}


def _hashable(value: Any) -> str | int | None:
    """A key an upstream gave (an item id, an index), if it can be one."""
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def output_cap(sent: dict[str, Any]) -> int | None:
    """The most output tokens the upstream may bill for the body built (None: no bound sent).

    Responses bills reasoning inside `max_output_tokens`, so it alone bounds the output. Budget
    reservations are computed from this, after every dialect and `thinking` adjustment.
    """
    return largest_count(sent, "max_output_tokens")
