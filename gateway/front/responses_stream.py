"""Neutral deltas to the Responses API's typed stream events, with one rising `sequence_number`.

`response.created` and `response.in_progress` first; then each output item opened
(`output_item.added`), filled (`reasoning_summary_*`, `content_part.*`, `output_text.*`,
`function_call_arguments.*`) and closed (`output_item.done`) in turn, output indexes 0..n; last
`response.completed` (or `response.incomplete`) with the whole response. A failure after the
first event is `response.failed`, never `response.completed`. An upstream that speaks Responses
itself (`Delta.native`) has its events relayed, each checked, renumbered (sequence numbers and
output indexes ours) and closed here, with our response id and the route's model name.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.base import Delta, Usage
from gateway.errors import GatewayError, error_body
from gateway.front.base import ClientRequest, estimate_usage
from gateway.front.responses_encode import (
    call_item,
    checked_item,
    event,
    finished,
    native_status,
    reasoning_item,
    response_object,
    status_of,
    text_part,
    usage_object,
)
from gateway.front.thinktags import ThinkSplitter
from gateway.scrub import Scrubber

# Relayed item-level events: the string fields each must carry (output_index is renumbered on all).
_RELAYED: dict[str, tuple[str, ...]] = {
    "response.content_part.added": ("item_id",), "response.content_part.done": ("item_id",),
    "response.output_text.delta": ("item_id", "delta"), "response.output_text.done": ("item_id", "text"),
    "response.refusal.delta": ("item_id", "delta"), "response.refusal.done": ("item_id", "refusal"),
    "response.function_call_arguments.delta": ("item_id", "delta"),
    "response.function_call_arguments.done": ("item_id", "arguments"),
    "response.reasoning_summary_part.added": ("item_id",), "response.reasoning_summary_part.done": ("item_id",),
    "response.reasoning_summary_text.delta": ("item_id", "delta"),
    "response.reasoning_summary_text.done": ("item_id", "text"),
    "response.reasoning_text.delta": ("item_id", "delta"), "response.reasoning_text.done": ("item_id", "text"),
    "response.output_text.annotation.added": ("item_id",),
}
_TEXTS = ("item_id", "delta", "text", "refusal", "arguments", "name")
_INDEXES = ("content_index", "summary_index", "annotation_index")


class ResponsesStream:
    """One streamed answer as Responses events: `push(delta)` and `finish()` return SSE bytes."""

    keepalive = b": keep-alive\n\n"   # an SSE comment: every client skips it

    def __init__(self, response_id: str, created: int, route: str, prompt_estimate: int, asked: ClientRequest):
        self._rid = response_id[len("resp_"):]
        self._response = response_object(response_id, created, route, asked)
        self._created, self._prompt = created, prompt_estimate
        self.usage: Usage | None = None
        self.final: dict[str, Any] | None = None   # the whole response once completed (what a store keeps)
        self._finish: str | None = None
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []   # items, as the client has them so far
        self._open: str | None = None              # kind of the open item (neutral path)
        self._part: str | None = None              # kind of the open content part of a message
        self._texts: list[str] = []                # the open item's text so far
        self._calls: dict[Any, int] = {}           # upstream tool call index -> our output index
        self._last_call: Any = 0
        self._think = ThinkSplitter()
        self._written: list[str] = []              # what was streamed, for estimating usage
        self._reasoning: list[str] = []
        self._native = False
        self._relayed: dict[Any, int] = {}         # upstream output_index -> ours (native path)
        self._said: Any = None                     # the upstream's own final response (native path)
        self._head = self._tail = b""              # the open content part's delta bytes, before and after

    # -- the StreamEncoder protocol ----------------------------------------------------------------
    def push(self, delta: Delta) -> bytes:
        """Most deltas of a stream are more of the open text, past any `<think>`: `_push` would make the same
        bytes of them, with more steps."""
        if delta.text_only and self._think.passing and self._open == "message" and self._part == "output_text" \
                and self._head and not self._native:
            content = delta.content or ""
            self._texts.append(content)
            self._written.append(content)
            seq = self._seq
            self._seq = seq + 1
            return self._head + orjson.dumps(content) + self._tail + str(seq).encode() + b"}\n\n"
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
        if delta.content and self._head and self._part == "output_text" and self._open == "message" \
                and delta.reasoning is None and delta.refusal is None and not delta.tool_calls and not delta.signature:
            return self._more_text(delta.content)   # most deltas of a stream: more of the open text
        out: list[bytes] = []
        if delta.content:
            reasoning, content = self._think.feed(delta.content)
            self._thinking(out, reasoning)
            self._say(out, "output_text", content)
        self._thinking(out, delta.reasoning)
        if delta.signature:
            self._thinking(out, "", delta.signature)
        self._say(out, "refusal", delta.refusal)
        for call in delta.tool_calls or ():
            self._tool(out, call)
        return b"".join(out)

    def _more_text(self, content: str) -> bytes:
        reasoning, text = self._think.feed(content)
        if reasoning or not text:
            out: list[bytes] = []
            self._thinking(out, reasoning)
            self._say(out, "output_text", text)
            return b"".join(out)
        self._texts.append(text)
        self._written.append(text)
        seq, self._seq = self._seq, self._seq + 1
        return self._head + orjson.dumps(text) + self._tail + str(seq).encode() + b"}\n\n"

    def finish(self) -> bytes:
        if self.final is not None:
            return b""
        out: list[bytes] = []
        reasoning, content = self._think.flush()
        self._thinking(out, reasoning)
        self._say(out, "output_text", content)
        self._start(out)
        self._close(out)
        for index in sorted(self._relayed.values()):   # items a Responses upstream left open
            out.append(self._event("response.output_item.done", {"output_index": index, "item": self._output[index]}))
        self._relayed.clear()
        status, reason = native_status(self._said, self._finish) if self._native else status_of(self._finish)
        response = finished(self._snapshot(), status, reason, self.final_usage(), self._created)
        self.final = response
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": response}))
        return b"".join(out)

    def fail(self, error: GatewayError, scrubber: Scrubber) -> bytes:
        """`response.failed`, its `error` saying why; nothing follows."""
        out: list[bytes] = []
        self._start(out)
        status, body = error_body(error, scrubber)
        response = self._snapshot()
        response["status"] = "failed"
        response["error"] = {"code": "rate_limit_exceeded" if status == 429 else "server_error",
                             "message": body["error"]["message"]}
        response["usage"] = usage_object(self.final_usage())
        out.append(self._event("response.failed", {"response": response}))
        return b"".join(out)

    @property
    def usage_estimated(self) -> bool:
        return self.usage is None

    def final_usage(self) -> Usage:
        if self.usage is not None:
            return self.usage
        return estimate_usage(self._prompt, "".join(self._written), "".join(self._reasoning))

    # -- shared ------------------------------------------------------------------------------------
    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, **data, "sequence_number": self._seq}
        self._seq += 1
        return event(kind, data)

    def _snapshot(self) -> dict[str, Any]:
        return {**self._response, "output": list(self._output)}

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(self._event("response.created", {"response": self._snapshot()}))
            out.append(self._event("response.in_progress", {"response": self._snapshot()}))

    def _add(self, out: list[bytes], item: dict[str, Any]) -> int:
        self._start(out)
        index = len(self._output)
        self._output.append(item)
        out.append(self._event("response.output_item.added", {"output_index": index, "item": item}))
        return index

    # -- the neutral path --------------------------------------------------------------------------
    def _begin(self, out: list[bytes], kind: str, item: dict[str, Any]) -> None:
        self._close(out)
        self._add(out, item)
        self._open, self._texts = kind, []

    def _close(self, out: list[bytes]) -> None:
        """Close the open item: its last part, then `output_item.done` with the item whole."""
        if self._open is None:
            return
        index = len(self._output) - 1
        item = self._output[index]
        if self._open == "reasoning":
            text = "".join(self._texts)
            at = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            out.append(self._event("response.reasoning_summary_text.done", {**at, "text": text}))
            part = {"type": "summary_text", "text": text}
            out.append(self._event("response.reasoning_summary_part.done", {**at, "part": part}))
            item = reasoning_item(item["id"], text, item.get("encrypted_content"))
        elif self._open == "message":
            self._end_part(out, index, item)
            item = {**item, "status": "completed"}
        else:
            arguments = "".join(self._texts)
            if not arguments.strip():   # clients json.loads the arguments: none at all say "{}"
                arguments = "{}"
                self._written.append(arguments)
                out.append(self._event("response.function_call_arguments.delta",
                                       {"item_id": item["id"], "output_index": index, "delta": arguments}))
            item = {**item, "arguments": arguments, "status": "completed"}
            out.append(self._event("response.function_call_arguments.done",
                                   {"item_id": item["id"], "output_index": index, "name": item["name"],
                                    "arguments": arguments}))
        self._output[index] = item
        out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))
        self._open = None

    def _thinking(self, out: list[bytes], text: str | None, signature: str | None = None) -> None:
        if not text and not signature:
            return
        if self._open != "reasoning":
            self._begin(out, "reasoning", {"id": f"rs_{self._rid}_{len(self._output)}", "type": "reasoning",
                                           "summary": []})
            index = len(self._output) - 1
            out.append(self._event("response.reasoning_summary_part.added", {
                "item_id": self._output[index]["id"], "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}))
        index = len(self._output) - 1
        item = self._output[index]
        if signature:
            item["encrypted_content"] = item.get("encrypted_content", "") + signature
        if text:
            self._texts.append(text)
            self._reasoning.append(text)
            out.append(self._event("response.reasoning_summary_text.delta", {
                "item_id": item["id"], "output_index": index, "summary_index": 0, "delta": text}))

    def _say(self, out: list[bytes], part: str, text: str | None) -> None:
        """Text or a refusal: a content part of the open message (a new part when the kind changes)."""
        if not text:
            return
        if self._open != "message":
            self._begin(out, "message", {"id": f"msg_{self._rid}_{len(self._output)}", "type": "message",
                                         "role": "assistant", "status": "in_progress", "content": []})
            self._part = None
        index = len(self._output) - 1
        item = self._output[index]
        if self._part != part:
            self._end_part(out, index, item)
            self._part, self._texts, self._head = part, [], b""
            empty = text_part("") if part == "output_text" else {"type": "refusal", "refusal": ""}
            item["content"].append(empty)
            out.append(self._event("response.content_part.added", {
                "item_id": item["id"], "output_index": index, "content_index": len(item["content"]) - 1,
                "part": empty}))
        self._texts.append(text)
        self._written.append(text)
        if not self._head:   # every delta of this part starts alike: its bytes are made once
            kind = "response.output_text.delta" if part == "output_text" else "response.refusal.delta"
            self._head = (b"event: " + kind.encode() + b'\ndata: {"type":"' + kind.encode() + b'","item_id":'
                          + orjson.dumps(item["id"]) + b',"output_index":' + str(index).encode()
                          + b',"content_index":' + str(len(item["content"]) - 1).encode() + b',"delta":')
            self._tail = b',"logprobs":[],"sequence_number":' if part == "output_text" else b',"sequence_number":'
        out.append(self._head + orjson.dumps(text) + self._tail + str(self._seq).encode() + b"}\n\n")
        self._seq += 1

    def _end_part(self, out: list[bytes], index: int, item: dict[str, Any]) -> None:
        if self._part is None:
            return
        text, at = "".join(self._texts), len(item["content"]) - 1
        where = {"item_id": item["id"], "output_index": index, "content_index": at}
        if self._part == "output_text":
            part = text_part(text)
            out.append(self._event("response.output_text.done", {**where, "text": text, "logprobs": []}))
        else:
            part = {"type": "refusal", "refusal": text}
            out.append(self._event("response.refusal.done", {**where, "refusal": text}))
        item["content"][at] = part
        out.append(self._event("response.content_part.done", {**where, "part": part}))
        self._part = None

    def _tool(self, out: list[bytes], call: dict[str, Any]) -> None:
        """Calls in order, one item each; a fragment for a call already closed cannot be sent (no recorded
        upstream interleaves calls) and is counted, not lost, in the usage estimate."""
        key = call.get("index")
        if not isinstance(key, int):   # Mistral numbers no call: its id, or the call before, says which
            key = call.get("id") or self._last_call
        self._last_call = key
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        if key not in self._calls:
            item_id = f"fc_{self._rid}_{len(self._output)}"
            item = call_item(item_id, call.get("id"), fn.get("name"), "")
            self._begin(out, "call", {**item, "arguments": "", "status": "in_progress"})
            self._calls[key] = len(self._output) - 1
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._written.append(arguments)
            index = self._calls[key]
            if self._open == "call" and index == len(self._output) - 1:
                self._texts.append(arguments)
                out.append(self._event("response.function_call_arguments.delta",
                                       {"item_id": self._output[index]["id"], "output_index": index,
                                        "delta": arguments}))

    # -- the native path ---------------------------------------------------------------------------
    def _relay(self, data: dict[str, Any]) -> bytes:
        kind = data["type"]
        out: list[bytes] = []
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._start(out)
        elif kind in ("response.completed", "response.incomplete"):
            self._said = data.get("response")   # said once, by finish(), with every item closed first
        elif kind == "response.output_item.added":
            item = checked_item(data.get("item"))
            if item is not None and data.get("output_index") not in self._relayed:
                self._relayed[data.get("output_index")] = self._add(out, item)
        elif kind == "response.output_item.done":
            item = checked_item(data.get("item"))
            index = self._relayed.pop(data.get("output_index"), None)
            if item is not None and index is not None:
                if isinstance(self._output[index].get("id"), str):   # one identity per item, as clients check
                    item = {**item, "id": self._output[index]["id"]}
                self._output[index] = item
                out.append(self._event(kind, {"output_index": index, "item": item}))
        elif kind in _RELAYED:
            index = self._relayed.get(data.get("output_index"))
            fields = _fields(data, _RELAYED[kind])
            if index is not None and fields is not None:
                item = self._output[index]   # the item it belongs to says its id and name, whatever the event says
                if isinstance(item.get("id"), str):
                    fields["item_id"] = item["id"]
                if kind == "response.function_call_arguments.done" and isinstance(item.get("name"), str):
                    fields["name"] = item["name"]
                if "delta" in fields:
                    (self._reasoning if "reasoning" in kind else self._written).append(fields["delta"])
                if kind.startswith("response.output_text."):
                    fields.setdefault("logprobs", [])
                out.append(self._event(kind, {**fields, "output_index": index}))
        return b"".join(out)


def _fields(data: dict[str, Any], needed: tuple[str, ...]) -> dict[str, Any] | None:
    """The fields of a relayed event that clients read, each of its type; None when a needed one is missing."""
    out: dict[str, Any] = {}
    for name in _TEXTS:
        if isinstance(data.get(name), str):
            out[name] = data[name]
    for name in _INDEXES:
        if data.get(name).__class__ is int:
            out[name] = data[name]
    if "part" in data:
        part = checked_item(data["part"])
        if part is None:
            return None
        out["part"] = part
    if isinstance(data.get("logprobs"), list):
        out["logprobs"] = data["logprobs"]
    if isinstance(data.get("annotation"), dict):
        out["annotation"] = data["annotation"]
    return out if all(name in out for name in needed) else None
