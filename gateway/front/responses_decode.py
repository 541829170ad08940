"""A checked Responses body in the neutral (chat-completions) form every dialect builds from.

`instructions` and system or developer messages become system messages; the items of one
assistant turn (its reasoning, its text, its `function_call`s) become one assistant message
with `reasoning_content` and `tool_calls`, and the `function_call_output`s after it `tool`
messages right behind it, as chat completions requires. A reasoning item's summary is the
turn's reasoning text and its `encrypted_content` the signature Anthropic wants back. What
chat completions cannot say (files, hosted tools and their calls, item references) is dropped
here, and only here: a target that speaks Responses gets the client's own body; its tokens
still count (`unseen`), so a reservation sees them.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.tokens import count_text

# reasoning.effort -> the thinking budget of the neutral request (a target's `thinking` form decides the rest)
BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 65536}


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The client's `input` as items (a string is one user message)."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def to_chat(body: dict[str, Any], items: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The neutral body for the conversation `items` (stored ones first), and the prompt tokens it drops."""
    turns = _Turns()
    instructions = body.get("instructions")
    if instructions:
        turns.messages.append({"role": "system", "content": instructions})
    for item in items:
        turns.add(item)
    turns.close()
    out: dict[str, Any] = {"model": body["model"], "messages": turns.messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "stream", "parallel_tool_calls", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    unseen = turns.unseen
    tools = []
    for tool in body.get("tools") or ():
        if tool["type"] == "function":
            tools.append(_tool(tool))
        else:
            unseen += _count(tool)
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format")
    if fmt is not None:
        out["response_format"] = _format(fmt)
    effort = (body.get("reasoning") or {}).get("effort")
    if effort == "none":
        out["thinking"] = {"type": "disabled"}
    elif effort is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": BUDGETS[effort]}
        out["reasoning_effort"] = effort
    return out, unseen


def _count(value: Any) -> int:
    """A rough count of what the neutral body drops: reservations still see it."""
    return count_text(orjson.dumps(value).decode())


class _Turns:
    """Items in order, grouped into chat messages: an assistant turn stays open until a message of another
    role, or an assistant item after its tool results, closes it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.unseen = 0
        self._assistant: dict[str, Any] | None = None
        self._texts: list[str] = []
        self._thoughts: list[str] = []
        self._results: list[dict[str, Any]] = []

    def add(self, item: dict[str, Any]) -> None:
        kind = item.get("type") or "message"
        if kind == "message" and item["role"] != "assistant":
            self.close()
            self.messages.append(self._message(item))
        elif kind == "message":
            self._open(after_tools=True)
            self._texts.append(self._parts_text(item["content"]))
        elif kind == "reasoning":
            done = self._assistant is not None and (self._texts or "tool_calls" in self._assistant)
            turn = self._open(after_tools=True, fresh=bool(done))
            self._thoughts.extend(p["text"] for p in item["summary"])
            self._thoughts.extend(p["text"] for p in item.get("content") or ())
            if item.get("encrypted_content"):
                turn["reasoning_signature"] = item["encrypted_content"]
        elif kind == "function_call":
            turn = self._open(after_tools=True)
            turn.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function",
                 "function": {"name": item["name"], "arguments": item["arguments"]}})
        elif kind == "function_call_output":
            self._results.append({"role": "tool", "tool_call_id": item["call_id"],
                                  "content": self._output_text(item["output"])})
        else:
            self.unseen += _count(item)   # hosted tool calls, item references: a Responses target only

    def _open(self, after_tools: bool, fresh: bool = False) -> dict[str, Any]:
        """The open assistant turn; a new one once tool results came after it (or when `fresh`)."""
        if self._assistant is not None and ((after_tools and self._results) or fresh):
            self.close()
        if self._assistant is None:
            self._assistant = {"role": "assistant"}
        return self._assistant

    def close(self) -> None:
        turn = self._assistant
        if turn is not None:
            turn["content"] = "".join(self._texts) if self._texts else None
            if turn["content"] is None and "tool_calls" not in turn:
                turn["content"] = ""
            if self._thoughts:
                turn["reasoning_content"] = "".join(self._thoughts)
            self.messages.append(turn)
        self.messages.extend(self._results)
        self._assistant, self._texts, self._thoughts, self._results = None, [], [], []

    def _message(self, item: dict[str, Any]) -> dict[str, Any]:
        role, content = item["role"], item["content"]
        if role in ("system", "developer"):
            return {"role": "system", "content": content if isinstance(content, str) else self._parts_text(content)}
        if isinstance(content, str):
            return {"role": "user", "content": content}
        parts = []
        for part in content:
            kind = part["type"]
            if kind in ("input_text", "output_text"):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "refusal":
                parts.append({"type": "text", "text": part["refusal"]})
            elif kind == "input_image" and part.get("image_url"):
                image = {"url": part["image_url"]}
                if part.get("detail") in ("low", "high", "auto"):
                    image["detail"] = part["detail"]
                parts.append({"type": "image_url", "image_url": image})
            else:
                self.unseen += _count(part)
        return {"role": "user", "content": parts}

    def _parts_text(self, content: str | list[dict[str, Any]]) -> str:
        if isinstance(content, str):
            return content
        texts = []
        for part in content:
            text = part.get("refusal") if part["type"] == "refusal" else part.get("text")
            if isinstance(text, str) and part["type"] in ("input_text", "output_text", "refusal"):
                texts.append(text)
            else:
                self.unseen += _count(part)
        return "".join(texts)

    def _output_text(self, output: str | list[dict[str, Any]]) -> str:
        return output if isinstance(output, str) else self._parts_text(output)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool["name"]}
    for name in ("description", "parameters", "strict"):
        if tool.get(name) is not None:
            fn[name] = tool[name]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    if choice["type"] == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    return None   # a hosted tool or an allowed list: the model chooses among the functions it has


def _format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt["type"] != "json_schema":
        return {"type": fmt["type"]}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
    return {"type": "json_schema", "json_schema": schema}
