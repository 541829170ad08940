"""Neutral answers to the Responses API's `response` object, and the shapes its stream events share.

Whatever the upstream, the client sees our `resp_` id, the route's canonical model name, the
request's own settings repeated (instructions, tools, metadata, ...), output items (`reasoning`
with its summary, `message` with `output_text` parts, `function_call`), a status from the stop
reason and the usage. An upstream that speaks Responses itself (`Completion.native`) has its
output items relayed rather than rebuilt, each checked first: anything copied from an upstream
is hostile.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.base import Completion, Usage
from gateway.front.base import ClientRequest, estimate_usage
from gateway.front.thinktags import split_whole

# the stop reasons that end a response early: status `incomplete`, and why
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_REASONS = frozenset(INCOMPLETE.values())
# Required string fields of the output items and content parts clients parse; other types need only `type`.
_ITEM_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "message": (("id", str), ("content", list)),
    "function_call": (("call_id", str), ("name", str), ("arguments", str)),
    "reasoning": (("id", str), ("summary", list)),
    "output_text": (("text", str),), "refusal": (("refusal", str),), "summary_text": (("text", str),),
    "reasoning_text": (("text", str),),
}


def usage_object(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0,
                                     "cache_write_tokens": usage.cache_write_tokens or 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def response_object(response_id: str, created: int, route: str, asked: ClientRequest) -> dict[str, Any]:
    """A response `in_progress`, repeating the settings of the request (as `response.created` shows it)."""
    body = asked.native or {}
    reasoning = body.get("reasoning")
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    return {"id": response_id, "object": "response", "created_at": created, "status": "in_progress",
            "completed_at": None, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": route, "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": asked.recall,
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} if reasoning
            else None,
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": {"format": fmt}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": [_tool(t) for t in body.get("tools") or ()], "top_p": body.get("top_p", 1.0),
            "truncation": "disabled", "metadata": body.get("metadata") or {}}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool["type"] != "function":
        return tool
    return {"type": "function", "name": tool["name"], "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": tool.get("strict")}


def finished(response: dict[str, Any], status: str, reason: str | None, usage: Usage, now: int) -> dict[str, Any]:
    """The response as its last event or answer has it: `completed`, or `incomplete` and why."""
    response["status"] = status
    response["incomplete_details"] = {"reason": reason} if status == "incomplete" else None
    response["completed_at"] = now if status == "completed" else None
    response["usage"] = usage_object(usage)
    return response


def status_of(finish: str | None) -> tuple[str, str | None]:
    reason = INCOMPLETE.get(finish or "stop")
    return ("incomplete" if reason else "completed"), reason


def native_status(said: Any, finish: str | None) -> tuple[str, str | None]:
    """A Responses upstream's own status and reason when they are ones clients know; else from the stop."""
    if isinstance(said, dict) and said.get("status") in ("completed", "incomplete"):
        details = said.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        if said["status"] == "completed":
            return "completed", None
        if reason in _REASONS:
            return "incomplete", reason
    return status_of(finish)


def checked_item(item: Any) -> dict[str, Any] | None:
    """An output item (or content part) from an upstream if its fields have the types clients read, else None.
    Text parts get the `annotations` and `logprobs` lists clients index into."""
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return None
    for name, kind in _ITEM_FIELDS.get(item["type"], ()):
        if not isinstance(item.get(name), kind):
            return None
    kind = item["type"]
    if kind == "message":
        parts = [p for p in map(checked_item, item["content"]) if p is not None]
        return {**item, "role": "assistant", "content": parts, "status": _status(item.get("status"))}
    if kind == "reasoning":
        summary = [p for p in map(checked_item, item["summary"]) if p is not None and p["type"] == "summary_text"]
        return {**item, "summary": summary}
    if kind == "output_text":
        annotations = item.get("annotations")
        return {**item, "annotations": annotations if isinstance(annotations, list) else [],
                "logprobs": item["logprobs"] if isinstance(item.get("logprobs"), list) else []}
    if kind == "function_call":
        return {**item, "status": _status(item.get("status"))}
    return item


def _status(value: Any) -> str:
    return value if value in ("in_progress", "completed", "incomplete") else "completed"


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_body(done: Completion, response_id: str, created: int, route: str, prompt: int,
                  asked: ClientRequest) -> tuple[dict[str, Any], Usage, bool]:
    """The client's `response`, the usage to book, and whether it was estimated."""
    native = done.native[1] if done.native is not None and done.native[0] == "responses" else None
    if native is not None:
        said = native.get("output")
        output = [i for i in map(checked_item, said if isinstance(said, list) else ()) if i is not None]
        status, reason = native_status(native, done.finish_reason)
    else:
        output = _items(done, response_id[len("resp_"):])
        status, reason = status_of(done.finish_reason)
    usage, estimated = done.usage, done.usage is None
    if usage is None:
        written, reasoning = _texts(output)
        usage = estimate_usage(prompt, written, reasoning)
    response = response_object(response_id, created, route, asked)
    response["output"] = output
    return finished(response, status, reason, usage, created), usage, estimated


def _texts(output: list[dict[str, Any]]) -> tuple[str, str]:
    """What the output says, and what it reasoned, for estimating usage."""
    written, reasoning = [], []
    for item in output:
        if item["type"] == "message":
            written += [p.get("text") or p.get("refusal") or "" for p in item["content"]]
        elif item["type"] == "function_call":
            written.append(item["arguments"])
        elif item["type"] == "reasoning":
            reasoning += [p["text"] for p in item["summary"]]
    return "".join(written), "".join(reasoning)


def _items(done: Completion, rid: str) -> list[dict[str, Any]]:
    content, reasoning = done.content, done.reasoning
    if content:
        split, content = split_whole(content)
        if split is not None:
            reasoning = (reasoning or "") + split
    items: list[dict[str, Any]] = []
    if reasoning:
        items.append(reasoning_item(f"rs_{rid}_0", reasoning, done.signature))
    parts = ([text_part(content)] if content else []) + \
        ([{"type": "refusal", "refusal": done.refusal}] if done.refusal else [])
    if parts:
        status = "incomplete" if done.finish_reason in INCOMPLETE else "completed"
        items.append({"id": f"msg_{rid}_{len(items)}", "type": "message", "role": "assistant", "status": status,
                      "content": parts})
    for call in done.tool_calls or ():
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        items.append(call_item(f"fc_{rid}_{len(items)}", call.get("id"), fn.get("name"), fn.get("arguments")))
    return items


def reasoning_item(item_id: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if signature:
        item["encrypted_content"] = signature   # Anthropic's thinking signature: what continues the turn
    return item


def call_item(item_id: str, call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A function call; arguments that are no text or blank say "{}", as OpenAI does: clients json.loads them."""
    text = arguments if isinstance(arguments, str) and arguments.strip() else "{}"
    return {"id": item_id, "type": "function_call", "status": "completed",
            "call_id": call_id if isinstance(call_id, str) and call_id else f"call_{item_id}",
            "name": name if isinstance(name, str) else "", "arguments": text}


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
