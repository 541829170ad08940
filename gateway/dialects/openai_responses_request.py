"""OpenAI's `/responses` request, built from the neutral (chat-shaped) body, or the client's own.

Built from scratch, so chat-only fields never leak: system text becomes `instructions`, messages
become input items (`message` with input_text / input_image / output_text parts, `function_call`,
`function_call_output`, a `reasoning` item when the signature is OpenAI's own encrypted reasoning),
tools become flat function tools. `store` is false unless the body says otherwise: the gateway keeps
conversations itself. Pure data in, data out.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.base import TargetView, UpstreamRequest

MIN_OUTPUT_TOKENS = 16          # OpenAI refuses a smaller max_output_tokens (integer_below_min_value)
ANSWER_ROOM = 1024              # tokens left for the answer above a thinking budget (reasoning bills inside the cap)
EFFORTS = ((2048, "low"), (8192, "medium"))   # a thinking budget up to N tokens asks for this effort; above: high
ENCRYPTED_PREFIX = "gAAAA"      # OpenAI's encrypted reasoning (a Fernet token); other providers' signatures are not
PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "metadata", "service_tier", "prompt_cache_key",
          "safety_identifier")


def build_request(body: dict[str, Any], target: TargetView, stream: bool) -> UpstreamRequest:
    instructions, items = _input(body.get("messages") or [])
    out: dict[str, Any] = {"model": target.model, "input": items}
    if instructions:
        out["instructions"] = instructions
    for field in PASSED:
        if body.get(field) is not None:
            out[field] = body[field]
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool):
        out["max_output_tokens"] = max(cap, MIN_OUTPUT_TOKENS)
    tools = [_tool(t) for t in body.get("tools") or ()
             if isinstance(t, dict) and t.get("type", "function") == "function"]
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
    else:
        out.pop("parallel_tool_calls", None)   # OpenAI accepts it only beside tools
    text_format = _text_format(body.get("response_format"))
    if text_format is not None:
        out["text"] = {"format": text_format}
    _reasoning(body, out)
    out["store"] = body["store"] if isinstance(body.get("store"), bool) else False
    if stream:
        out["stream"] = True
    return UpstreamRequest(url=_url(target), headers=_headers(target), body=out)


def build_native(body: dict[str, Any], target: TargetView, stream: bool, headers: dict[str, str]) -> UpstreamRequest:
    """A Responses body as the client sent it (unknown fields, reasoning items, include), our model name."""
    out = dict(body)
    out["model"] = target.model
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return UpstreamRequest(url=_url(target), headers=_headers(target), body=out)


def _url(target: TargetView) -> str:
    return f"{(target.base_url or '').rstrip('/')}/responses"


def _headers(target: TargetView) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    headers.update(target.headers or {})
    return headers


# ---------------------------------------------------------------- reasoning

def _reasoning(body: dict[str, Any], out: dict[str, Any]) -> None:
    """`reasoning.effort` from what the target's thinking form left in the body: a `reasoning` object
    (merged by `params`), `reasoning_effort`, or a native `thinking` (its budget picks the effort, and the
    output cap is raised above the budget, since reasoning bills inside max_output_tokens)."""
    reasoning = dict(body["reasoning"]) if isinstance(body.get("reasoning"), dict) else {}
    if isinstance(body.get("reasoning_effort"), str):
        reasoning.setdefault("effort", body["reasoning_effort"])
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else None
        reasoning.setdefault("effort", _effort(budget))
        cap = out.get("max_output_tokens")
        if budget is not None and cap is not None and cap <= budget:
            out["max_output_tokens"] = budget + ANSWER_ROOM
    if not reasoning:
        return
    reasoning.setdefault("summary", "auto")   # the reasoning text a client sees is its summary
    out["reasoning"] = reasoning
    include: list[Any] = body["include"] if isinstance(body.get("include"), list) else []
    out["include"] = include if "reasoning.encrypted_content" in include else [*include, "reasoning.encrypted_content"]


def _effort(budget: int | None) -> str:
    if budget is None:
        return "medium"
    return next((effort for bound, effort in EFFORTS if budget <= bound), "high")


# ---------------------------------------------------------------- input items

def _input(messages: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """(instructions, items): leading system/developer text is `instructions`; a later one stays in place
    as a developer message."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role in ("system", "developer"):
            if not items:
                instructions.extend(_texts(msg.get("content")))
            else:
                parts = [{"type": "input_text", "text": t} for t in _texts(msg.get("content")) if t]
                if parts:
                    items.append({"type": "message", "role": "developer", "content": parts})
        elif role == "user":
            parts = _user_parts(msg.get("content"))
            if parts:
                items.append({"type": "message", "role": "user", "content": parts})
        elif role == "assistant":
            items.extend(_assistant_items(msg))
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": str(msg.get("tool_call_id") or ""),
                          "output": _tool_output(msg.get("content"))})
    return "\n\n".join(t for t in instructions if t), items


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [p["text"] for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")
            and isinstance(p.get("text"), str)]


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    parts = []
    for part in content if isinstance(content, list) else ():
        part = _user_part(part) if isinstance(part, dict) else None
        if part is not None:
            parts.append(part)
    return parts


def _user_part(part: dict[str, Any]) -> dict[str, Any] | None:
    """A chat content part as a Responses input part; None for one it cannot carry (audio, say)."""
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "input_text", "text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            return None
        detail = image.get("detail") if isinstance(image, dict) else None
        return {"type": "input_image", "image_url": url, "detail": detail if isinstance(detail, str) else "auto"}
    if kind == "file" and isinstance(part.get("file"), dict):
        fields = {k: v for k, v in part["file"].items() if k in ("file_data", "file_id", "filename")}
        return {"type": "input_file", **fields}
    if kind in ("input_text", "input_image", "input_file"):
        return part     # already Responses-shaped
    return None


def _assistant_items(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """Reasoning first (only OpenAI's own encrypted reasoning can go back), then the text, then the calls."""
    items: list[dict[str, Any]] = []
    signature, reasoning = msg.get("reasoning_signature"), msg.get("reasoning_content")
    if isinstance(signature, str) and signature.startswith(ENCRYPTED_PREFIX):
        summary = [{"type": "summary_text", "text": reasoning}] if isinstance(reasoning, str) and reasoning else []
        items.append({"type": "reasoning", "summary": summary, "encrypted_content": signature})
    parts = [{"type": "output_text", "text": t} for t in _texts(msg.get("content")) if t]
    if isinstance(msg.get("refusal"), str) and msg["refusal"]:
        parts.append({"type": "refusal", "refusal": msg["refusal"]})
    if parts:
        items.append({"type": "message", "role": "assistant", "content": parts})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        items.append({"type": "function_call", "call_id": str(call.get("id") or ""), "name": str(fn.get("name") or ""),
                      "arguments": arguments})
    return items


def _tool_output(content: Any) -> Any:
    """A tool result: its text, or input parts when it carries images."""
    if isinstance(content, str):
        return content
    parts = _user_parts(content)
    if any(p["type"] != "input_text" for p in parts):
        return parts
    return "".join(p["text"] for p in parts)


# ---------------------------------------------------------------- tools and formats

def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Chat's nested function tool, flat; `strict` said explicitly, since Responses defaults it to true."""
    fn = tool["function"] if isinstance(tool.get("function"), dict) else {}
    out: dict[str, Any] = {"type": "function", "name": fn.get("name"),
                           "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
                           "strict": fn.get("strict") is True}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        if isinstance(name, str):
            return {"type": "function", "name": name}
    return None


def _text_format(fmt: Any) -> dict[str, Any] | None:
    """response_format -> text.format: json_schema's inner object is flattened beside its type."""
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        inner = fmt["json_schema"]
        out = {"type": "json_schema", "name": inner.get("name") or "response",
               "schema": inner.get("schema") or {"type": "object"}}
        for field in ("strict", "description"):
            if inner.get(field) is not None:
                out[field] = inner[field]
        return out
    return None
