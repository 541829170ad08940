"""The Anthropic Messages request rules (SPEC section 10.1), checked before anything reads the body.

Every field the gateway reads, at every depth, has its JSON type checked here, so a
translation or a dialect never meets a wrong shape. Blocks and tools of types the
gateway does not know (a document, a server tool) need only a string `type`: they
pass to Anthropic targets and are dropped for the others.
"""
from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.front.chat_params import MAX_COUNT, _Fields, _is_int, _number, _object, _shape

_ROLES = ("user", "assistant")
_BLOCKS: dict[str, _Fields] = {
    "text": (("text", str, True),),
    "image": (("source", dict, True),),
    "document": (("source", dict, True),),
    "tool_use": (("id", str, True), ("name", str, True), ("input", dict, True)),
    "tool_result": (("tool_use_id", str, True), ("is_error", bool, False)),
    "thinking": (("thinking", str, True), ("signature", str, False)),
    "redacted_thinking": (("data", str, True),),
}
_SOURCES: dict[str, _Fields] = {"base64": (("media_type", str, True), ("data", str, True)),
                                "url": (("url", str, True),)}
_CUSTOM_TOOL: _Fields = (("name", str, True), ("description", str, False), ("input_schema", dict, True))
_TOOL_CHOICES = ("auto", "any", "tool", "none")
MIN_THINKING_BUDGET = 1024   # Anthropic's own floor


def _fail(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def validate(body: dict[str, Any], count_only: bool = False) -> None:
    """Every rule; `count_only`: the body of `/v1/messages/count_tokens` (no `max_tokens`)."""
    if not count_only:
        _max_tokens(body.get("max_tokens"))
    _system(body.get("system"))
    _messages(body.get("messages"))
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise _fail("top_k", "'top_k' must be a non-negative integer.", "invalid_type")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _fail("stop_sequences", "'stop_sequences' must be an array of strings.", "invalid_type")
    if body.get("metadata") is not None:
        _shape(_object(body["metadata"], "metadata"), "metadata", (("user_id", str, False),))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _fail("stream", "'stream' must be a boolean.", "invalid_type")
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _thinking(body.get("thinking"), None if count_only else body["max_tokens"])


def _max_tokens(value: Any) -> None:
    if value is None:
        raise _fail("max_tokens", "'max_tokens' is required.", "missing_required_parameter")
    if not _is_int(value):
        raise _fail("max_tokens", "'max_tokens' must be an integer.", "invalid_type")
    if not 1 <= value <= MAX_COUNT:
        raise _fail("max_tokens", f"'max_tokens' must be between 1 and {MAX_COUNT}; got {value}.")



def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _fail("system", "'system' must be a string or an array of text blocks.", "invalid_type")
    for i, block in enumerate(system):
        path = f"system[{i}]"
        _shape(_object(block, path), path, (("type", str, True), ("text", str, True)))
        if block["type"] != "text":
            raise _fail(f"{path}.type", f"'{path}.type' must be 'text'.")


def _messages(messages: Any) -> None:
    if messages is None:
        raise _fail("messages", "'messages' is required.", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _fail("messages", "'messages' must be an array of message objects.", "invalid_type")
    if not messages:
        raise _fail("messages", "'messages' must contain at least one message.")
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        _shape(_object(message, path), path, (("role", str, True),))
        if message["role"] not in _ROLES:
            raise _fail(f"{path}.role", f"'{path}.role' must be 'user' or 'assistant'.")
        _content(message.get("content"), f"{path}.content")


def _content(content: Any, path: str, nested: bool = False) -> None:
    if content is None:
        raise _fail(path, f"'{path}' is required.", "missing_required_parameter")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(path, f"'{path}' must be a string or an array of content blocks.", "invalid_type")
    for j, block in enumerate(content):
        _block(_object(block, f"{path}[{j}]"), f"{path}[{j}]", nested)


def _block(block: dict[str, Any], path: str, nested: bool) -> None:
    _shape(block, path, (("type", str, True),))
    kind = block["type"]
    _shape(block, path, _BLOCKS.get(kind, ()))
    if kind in ("image", "document"):
        source = block["source"]
        _shape(source, f"{path}.source", (("type", str, True),))
        _shape(source, f"{path}.source", _SOURCES.get(source["type"], ()))
    elif kind == "tool_result":
        if nested:
            raise _fail(f"{path}.type", f"'{path}' may not hold a tool_result.")
        if block.get("content") is not None:
            _content(block["content"], f"{path}.content", nested=True)


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _fail("tools", "'tools' must be an array.", "invalid_type")
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        _shape(_object(tool, path), path, (("type", str, False),))
        if tool.get("type") in (None, "custom"):
            _shape(tool, path, _CUSTOM_TOOL)
        else:
            _shape(tool, path, (("name", str, False),))


def _tool_choice(choice: Any) -> None:
    if choice is None:
        return
    _shape(_object(choice, "tool_choice"), "tool_choice",
           (("type", str, True), ("name", str, False), ("disable_parallel_tool_use", bool, False)))
    if choice["type"] not in _TOOL_CHOICES:
        raise _fail("tool_choice.type", "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'.")
    if choice["type"] == "tool" and choice.get("name") is None:
        raise _fail("tool_choice.name", "'tool_choice.name' is required when its type is 'tool'.",
                    "missing_required_parameter")


def _thinking(thinking: Any, max_tokens: int | None) -> None:
    if thinking is None:
        return
    _shape(_object(thinking, "thinking"), "thinking", (("type", str, True),))
    kind = thinking["type"]
    if kind == "disabled":
        return
    if kind != "enabled":
        raise _fail("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'.")
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise _fail("thinking.budget_tokens", "'thinking.budget_tokens' is required when thinking is enabled.",
                    "missing_required_parameter")
    if not _is_int(budget):
        raise _fail("thinking.budget_tokens", "'thinking.budget_tokens' must be an integer.", "invalid_type")
    if budget < MIN_THINKING_BUDGET:
        raise _fail("thinking.budget_tokens", f"'thinking.budget_tokens' must be at least {MIN_THINKING_BUDGET}.")
    if max_tokens is not None and budget >= max_tokens:
        raise _fail("max_tokens", "'max_tokens' must be greater than 'thinking.budget_tokens'.")
