"""A checked Messages body in the neutral (chat-completions) form every dialect builds from.

System text becomes a system message; `tool_use` blocks become `tool_calls` and
`tool_result` blocks `tool` messages (placed first, right after the assistant turn
that called them, as chat completions requires); signed thinking becomes
`reasoning_content` with its `reasoning_signature`. What chat completions cannot
say (documents, server tools, `top_k`, redacted thinking, `cache_control`) is
dropped here, and only here: an Anthropic target gets the client's own body.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.tokens import count_text

MAX_STOPS = 4   # chat completions' bound; an Anthropic target gets every stop sequence
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def to_chat(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The neutral body, and an estimate of the prompt tokens only the client's own body carries."""
    unseen = 0
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
        messages.append({"role": "system", "content": text})
    for message in body["messages"]:
        converted, dropped = _message(message)
        messages.extend(converted)
        unseen += dropped
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    if "max_tokens" in body:
        out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"][:MAX_STOPS]
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    tools = [_tool(t) for t in body.get("tools") or () if t.get("type") in (None, "custom")]
    unseen += sum(count_text(orjson.dumps(t).decode()) for t in body.get("tools") or ()
                  if t.get("type") not in (None, "custom"))
    if tools:
        out["tools"] = tools
        _tool_choice(body.get("tool_choice"), out)
    thinking = body.get("thinking")
    if thinking is not None:
        out["thinking"] = thinking
    return out, unseen


def _message(message: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    role, content = message["role"], message["content"]
    if isinstance(content, str):
        return [{"role": role, "content": content}], 0
    if role == "assistant":
        return _assistant(content)
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    unseen = 0
    for block in content:
        kind = block["type"]
        if kind == "tool_result":
            result, dropped = _tool_result(block)
            results.append(result)
            unseen += dropped
        elif (part := _part(block)) is not None:
            parts.append(part)
        else:
            unseen += _unseen(block)
    if parts or not results:
        results.append({"role": "user", "content": parts})
    return results, unseen


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    """A text or image block as a chat content part; None for what chat completions cannot carry."""
    if block["type"] == "text":
        return {"type": "text", "text": block["text"]}
    if block["type"] == "image":
        source = block["source"]
        if source["type"] == "base64":
            return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
        if source["type"] == "url":
            return {"type": "image_url", "image_url": {"url": source["url"]}}
    return None


def _unseen(block: dict[str, Any]) -> int:
    """A rough count of a block the neutral body drops (a document, say): reservations still see it."""
    return count_text(orjson.dumps(block).decode())


def _tool_result(block: dict[str, Any]) -> tuple[dict[str, Any], int]:
    content = block.get("content")
    unseen = 0
    if isinstance(content, list):
        texts = []
        for inner in content:
            if inner["type"] == "text":
                texts.append(inner["text"])
            else:
                unseen += _unseen(inner)   # a chat tool message carries text only
        content = "\n".join(texts)
    text = content or ""
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}, unseen


def _assistant(content: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    texts, thoughts, calls = [], [], []
    signature = None
    unseen = 0
    for block in content:
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "thinking":
            thoughts.append(block["thinking"])
            signature = block.get("signature") or signature
            unseen += count_text(block["thinking"])   # the estimate reads no reasoning; Anthropic may bill it
        elif kind == "tool_use":
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": orjson.dumps(block["input"]).decode()}})
        else:
            unseen += _unseen(block)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
        if signature:
            message["reasoning_signature"] = signature
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return [message], unseen


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: dict[str, Any] | None, out: dict[str, Any]) -> None:
    if choice is None:
        return
    if choice["type"] == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        out["tool_choice"] = _TOOL_CHOICES[choice["type"]]
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
