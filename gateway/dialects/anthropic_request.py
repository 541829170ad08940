"""Anthropic's `/v1/messages` request, built from the neutral (chat-shaped) body, or the client's own.

Built from scratch, so unknown OpenAI fields never leak; system text hoisted,
same-role turns merged (Anthropic wants strict alternation), signed thinking
kept, tool calls and results as blocks. Pure data in, data out.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.base import TargetView, UpstreamRequest

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
DEFAULT_THINKING_BUDGET = 2048
MIN_THINKING_BUDGET = 1024      # Anthropic refuses smaller budgets
ANSWER_ROOM = 1024              # tokens left for the answer above the budget

TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


# ---------------------------------------------------------------- request

def build_request(body: dict[str, Any], target: TargetView, stream: bool) -> UpstreamRequest:
    """Build the upstream request from scratch, so unknown OpenAI fields never leak."""
    system, messages = _convert_messages(body.get("messages") or [])
    out: dict[str, Any] = {"model": target.model, "messages": messages}
    if system:
        out["system"] = system
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out["max_tokens"] = max_tokens
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            out[field] = body[field]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [_convert_tool(t) for t in body.get("tools") or [] if t.get("type", "function") == "function"]
    if tools:
        out["tools"] = tools
        choice = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = max(int(thinking.get("budget_tokens") or DEFAULT_THINKING_BUDGET), MIN_THINKING_BUDGET)
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if out["max_tokens"] <= budget:
            out["max_tokens"] = budget + ANSWER_ROOM
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if stream:
        out["stream"] = True

    return UpstreamRequest(url=_url(target), headers=_headers(target, {}), body=out)


FORWARDED = ("anthropic-version", "anthropic-beta")   # the client's own, on a pass-through


def build_native(body: dict[str, Any], target: TargetView, stream: bool, headers: dict[str, str]) -> UpstreamRequest:
    """A Messages body as the client sent it (cache_control, signatures, unknown fields), our model name."""
    out = dict(body)
    out["model"] = target.model
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return UpstreamRequest(url=_url(target), headers=_headers(target, headers), body=out)


def _url(target: TargetView) -> str:
    return (target.base_url or "https://api.anthropic.com").rstrip("/") + "/v1/messages"


def _headers(target: TargetView, client: dict[str, str]) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
    headers.update((k, v) for k, v in client.items() if k in FORWARDED)
    if target.api_key:
        headers["x-api-key"] = target.api_key
    headers.update(target.headers or {})
    return headers


def _convert_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Hoist system text to the top and merge same-role turns: Anthropic wants strict alternation."""
    system_parts: list[str] = []
    turns: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system_parts.extend(_texts(msg.get("content")))
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"))
        elif role == "assistant":
            blocks = _assistant_blocks(msg)
        elif role == "tool":
            role, blocks = "user", [_tool_result(msg)]
        else:
            continue
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(p for p in system_parts if p), turns


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (string or parts) to Anthropic blocks; empty text is dropped (Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if not part.get("text"):
                continue
            block = {"type": "text", "text": part["text"]}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            blocks.append({"type": "image", "source": _image_source(url)})
        else:
            blocks.append(part)     # already Anthropic-shaped (document, image, ...) or refused upstream
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(",", 1)
        return {"type": "base64", "media_type": header.split(";", 1)[0], "data": data}
    return {"type": "url", "url": url}


def _assistant_blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """Thinking first (only when signed: Anthropic refuses unsigned thinking), then text, then tool uses."""
    blocks: list[dict[str, Any]] = []
    if msg.get("reasoning_content") and msg.get("reasoning_signature"):
        blocks.append({"type": "thinking", "thinking": msg["reasoning_content"],
                       "signature": msg["reasoning_signature"]})
    blocks.extend(_content_blocks(msg.get("content")))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                       "input": _parse_arguments(fn.get("arguments"))})
    return blocks


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    """Anthropic wants `input` as an object; anything that is not a JSON object becomes {}."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
    if isinstance(content, str):
        result["content"] = content
    elif content:
        result["content"] = _content_blocks(content)
    return result


def _convert_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out = {"name": fn.get("name"),
           "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """Map OpenAI tool_choice; `parallel_tool_calls: false` has a direct Anthropic twin."""
    out: dict[str, Any]
    if isinstance(choice, str):
        out = dict(TOOL_CHOICES.get(choice, {"type": "auto"}))
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    elif parallel is False:
        out = {"type": "auto"}
    else:
        return None
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out
