"""The OpenAI Responses request rules (SPEC section 10.2), checked before anything reads the body.

Every field the gateway reads, at every depth, has its JSON type checked here, so the
translation (`responses_decode`) and a dialect never meet a wrong shape; a violation is a
400 naming its path (`input[2].call_id`). Items, content parts and tools of types the
gateway does not translate (a file, a web search call, a hosted tool) need only a string
`type`: they reach a target that speaks Responses as is and are dropped for the others.
"""
from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.front.chat_params import MAX_COUNT, _Fields, _is_int, _number, _object, _shape

ROLES = ("user", "assistant", "system", "developer")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_TOOL_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")
_PARTS: dict[str, _Fields] = {
    "input_text": (("text", str, True),),
    "output_text": (("text", str, True), ("annotations", list, False)),
    "refusal": (("refusal", str, True),),
    "summary_text": (("text", str, True),),
    "reasoning_text": (("text", str, True),),
    "input_image": (("image_url", str, False), ("file_id", str, False), ("detail", str, False)),
    "input_file": (("file_id", str, False), ("file_data", str, False), ("filename", str, False),
                   ("file_url", str, False)),
}
_ITEMS: dict[str, _Fields] = {
    "function_call": (("call_id", str, True), ("name", str, True), ("arguments", str, True), ("id", str, False)),
    "function_call_output": (("call_id", str, True), ("id", str, False)),
    "reasoning": (("summary", list, True), ("content", list, False), ("encrypted_content", str, False),
                  ("id", str, False)),
    "item_reference": (("id", str, True),),
}
_FUNCTION_TOOL: _Fields = (("name", str, True), ("description", str, False), ("parameters", dict, False),
                           ("strict", bool, False))
_JSON_SCHEMA: _Fields = (("name", str, True), ("schema", dict, True), ("strict", bool, False),
                         ("description", str, False))
MAX_METADATA = 16   # OpenAI's bound on metadata pairs


def _fail(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def validate(body: dict[str, Any]) -> None:
    """Every rule of the Responses request, in the order a person would fix them."""
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise _fail("previous_response_id", "'previous_response_id' must be a string.", "invalid_type")
    _input(body.get("input"), previous is not None)
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise _fail("instructions", "'instructions' must be a string.", "invalid_type")
    for name in ("stream", "store", "parallel_tool_calls", "background"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise _fail(name, f"'{name}' must be a boolean.", "invalid_type")
    if body.get("background") is True:
        raise _fail("background", "'background' mode is not supported by this gateway.", "unsupported_parameter")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _max_output_tokens(body.get("max_output_tokens"))
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _fail("user", "'user' must be a string.", "invalid_type")
    _metadata(body.get("metadata"))
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _reasoning(body.get("reasoning"))
    _text(body.get("text"))
    if body.get("stream_options") is not None:
        _object(body["stream_options"], "stream_options")
    include = body.get("include")
    if include is not None and (not isinstance(include, list) or not all(isinstance(s, str) for s in include)):
        raise _fail("include", "'include' must be an array of strings.", "invalid_type")



def _max_output_tokens(value: Any) -> None:
    if value is None:
        return
    if not _is_int(value):
        raise _fail("max_output_tokens", "'max_output_tokens' must be an integer.", "invalid_type")
    if not 1 <= value <= MAX_COUNT:
        raise _fail("max_output_tokens", f"'max_output_tokens' must be between 1 and {MAX_COUNT}; got {value}.")


def _metadata(metadata: Any) -> None:
    if metadata is None:
        return
    _object(metadata, "metadata")
    if len(metadata) > MAX_METADATA:
        raise _fail("metadata", f"'metadata' may hold at most {MAX_METADATA} pairs.")
    for name, value in metadata.items():
        if not isinstance(value, str):
            raise _fail(f"metadata.{name}", f"'metadata.{name}' must be a string.", "invalid_type")


def _input(value: Any, continued: bool) -> None:
    if value is None:
        if continued:
            return
        raise _fail("input", "'input' is required.", "missing_required_parameter")
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _fail("input", "'input' must be a string or an array of input items.", "invalid_type")
    for i, item in enumerate(value):
        check_item(_object(item, f"input[{i}]"), f"input[{i}]")


def check_item(item: dict[str, Any], path: str) -> None:
    """One input item (also an output item kept and sent back: reasoning, message, function_call)."""
    _shape(item, path, (("type", str, False),))
    kind = item.get("type")
    if kind is None and item.get("role") is None:
        raise _fail(f"{path}.type", f"'{path}.type' is required (or a 'role', for a message).",
                    "missing_required_parameter")
    if kind in (None, "message"):
        _message(item, path)
        return
    _shape(item, path, _ITEMS.get(kind, ()))
    if kind == "function_call_output":
        _output(item.get("output"), f"{path}.output")
    elif kind == "reasoning":
        for field in ("summary", "content"):
            for j, part in enumerate(item.get(field) or ()):
                where = f"{path}.{field}[{j}]"
                _shape(_object(part, where), where, (("type", str, True), ("text", str, True)))


def _message(item: dict[str, Any], path: str) -> None:
    _shape(item, path, (("role", str, True),))
    if item["role"] not in ROLES:
        raise _fail(f"{path}.role", f"'{path}.role' must be one of {', '.join(ROLES)}.")
    content = item.get("content")
    if content is None:
        raise _fail(f"{path}.content", f"'{path}.content' is required.", "missing_required_parameter")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(f"{path}.content", f"'{path}.content' must be a string or an array of content parts.",
                    "invalid_type")
    for j, part in enumerate(content):
        _part(_object(part, f"{path}.content[{j}]"), f"{path}.content[{j}]")


def _part(part: dict[str, Any], path: str) -> None:
    _shape(part, path, (("type", str, True),))
    _shape(part, path, _PARTS.get(part["type"], ()))


def _output(output: Any, path: str) -> None:
    if output is None:
        raise _fail(path, f"'{path}' is required.", "missing_required_parameter")
    if isinstance(output, str):
        return
    if not isinstance(output, list):
        raise _fail(path, f"'{path}' must be a string or an array of content parts.", "invalid_type")
    for j, part in enumerate(output):
        _part(_object(part, f"{path}[{j}]"), f"{path}[{j}]")


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _fail("tools", "'tools' must be an array.", "invalid_type")
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        _shape(_object(tool, path), path, (("type", str, True),))
        if tool["type"] == "function":
            _shape(tool, path, _FUNCTION_TOOL)


def _tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _fail("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or an object.")
        return
    _shape(_object(choice, "tool_choice"), "tool_choice", (("type", str, True), ("name", str, False)))
    if choice["type"] == "function" and choice.get("name") is None:
        raise _fail("tool_choice.name", "'tool_choice.name' is required when its type is 'function'.",
                    "missing_required_parameter")


def _reasoning(reasoning: Any) -> None:
    if reasoning is None:
        return
    _shape(_object(reasoning, "reasoning"), "reasoning", (("effort", str, False), ("summary", str, False)))
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise _fail("reasoning.effort", f"'reasoning.effort' must be one of {', '.join(EFFORTS)}.")


def _text(text: Any) -> None:
    if text is None:
        return
    _shape(_object(text, "text"), "text", (("format", dict, False), ("verbosity", str, False)))
    fmt = text.get("format")
    if fmt is None:
        return
    _shape(fmt, "text.format", (("type", str, True),))
    if fmt["type"] not in _FORMATS:
        raise _fail("text.format.type", "'text.format.type' must be text, json_object or json_schema.")
    if fmt["type"] == "json_schema":
        _shape(fmt, "text.format", _JSON_SCHEMA)
