"""The OpenAI chat-completions request rules (SPEC section 5).

Hand-written rather than a pydantic model: it runs on every request, and each
violation must name the exact field path and one of four codes. The nested
shapes (messages, content parts, tool calls, tools) are checked here too, down
to every field a dialect reads, so no dialect ever meets a wrong JSON type.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import InvalidRequest

UNSUPPORTED = ("n", "seed", "logit_bias")
MAX_COUNT = 2 ** 31 - 1     # OpenAI's own bound on integer parameters; a larger token count is no request
_TOOL_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")
_Fields = tuple[tuple[str, type, bool], ...]   # (name, type, required) of an object's fields


def _fail(param: str, message: str, code: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    v = body.get(name)
    if v is None:
        return
    if not _is_number(v):
        raise _fail(name, f"'{name}' must be a number.", "invalid_type")
    if not low <= v <= high:
        raise _fail(name, f"'{name}' must be between {low:g} and {high:g}; got {v}.", "invalid_value")


def _count(v: Any, name: str) -> None:
    """A token count: an integer from 1 to MAX_COUNT."""
    if not _is_int(v):
        raise _fail(name, f"'{name}' must be an integer.", "invalid_type")
    if not 1 <= v <= MAX_COUNT:
        raise _fail(name, f"'{name}' must be between 1 and {MAX_COUNT}; got {v}.", "invalid_value")


def _boolean(body: dict[str, Any], name: str) -> None:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise _fail(name, f"'{name}' must be a boolean.", "invalid_type")


_KINDS = {str: "a string", dict: "an object", list: "an array", bool: "a boolean"}


def _shape(obj: dict[str, Any], path: str, fields: _Fields) -> None:
    """Fields of one object: a wrong type first (what was sent), then what is missing (null counts as missing)."""
    for name, kind, _ in fields:
        v = obj.get(name)
        if v is not None and not isinstance(v, kind):
            raise _fail(f"{path}.{name}", f"'{path}.{name}' must be {_KINDS[kind]}.", "invalid_type")
    for name, _, required in fields:
        if required and obj.get(name) is None:
            raise _fail(f"{path}.{name}", f"'{path}.{name}' is required.", "missing_required_parameter")


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"'{path}' must be an object.", "invalid_type")
    return value


# The message fields a dialect reads, by type; other fields pass through to OpenAI-dialect upstreams.
_MESSAGE = (("role", str, True), ("name", str, False), ("tool_call_id", str, False), ("tool_calls", list, False),
            ("refusal", str, False), ("reasoning_content", str, False), ("reasoning_signature", str, False))
# Content parts by type; a part of another type (Anthropic-shaped `document`, say) needs only its `type`.
_PARTS = {"text": (("text", str, True),), "refusal": (("refusal", str, True),),
          "image_url": (("image_url", dict, True),), "input_audio": (("input_audio", dict, True),),
          "file": (("file", dict, True),)}
_NESTED = {"image_url": (("url", str, True), ("detail", str, False)),
           "input_audio": (("data", str, True), ("format", str, True))}
# Tool calls and tools of the two types OpenAI defines; another type (a provider's own) needs only `type`.
_CALL_BODIES = {"function": (("name", str, True), ("arguments", str, True)),
                "custom": (("name", str, True), ("input", str, True))}
_TOOL_BODIES = {"function": (("name", str, True), ("description", str, False), ("parameters", dict, False),
                             ("strict", bool, False)),
                "custom": (("name", str, True), ("description", str, False), ("format", dict, False))}


def _messages(messages: Any) -> None:
    if messages is None:
        raise _fail("messages", "'messages' is required.", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _fail("messages", "'messages' must be an array of message objects.", "invalid_type")
    if not messages:
        raise _fail("messages", "'messages' must contain at least one message.", "invalid_value")
    for i, message in enumerate(messages):
        _message(_object(message, f"messages[{i}]"), f"messages[{i}]")


def _message(message: dict[str, Any], path: str) -> None:
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise _fail(f"{path}.content", f"'{path}.content' must be a string or an array of parts.", "invalid_type")
    _shape(message, path, _MESSAGE)
    if message["role"] == "tool" and message.get("tool_call_id") is None:
        raise _fail(f"{path}.tool_call_id", f"'{path}.tool_call_id' is required in a tool message.",
                    "missing_required_parameter")
    if isinstance(content, list):
        for j, part in enumerate(content):
            _part(_object(part, f"{path}.content[{j}]"), f"{path}.content[{j}]")
    for k, call in enumerate(message.get("tool_calls") or ()):
        _typed(_object(call, f"{path}.tool_calls[{k}]"), f"{path}.tool_calls[{k}]", _CALL_BODIES, (("id", str, True),))


def _part(part: dict[str, Any], path: str) -> None:
    _shape(part, path, (("type", str, True),))
    kind = part["type"]
    _shape(part, path, _PARTS.get(kind, ()))
    if kind in _NESTED:
        _shape(part[kind], f"{path}.{kind}", _NESTED[kind])


def _typed(obj: dict[str, Any], path: str, bodies: Mapping[str, _Fields], own: _Fields = ()) -> None:
    """A tool or tool call: `type` names the field holding its body (`function`, `custom`)."""
    _shape(obj, path, (*own, ("type", str, True), *((name, dict, False) for name in bodies)))
    kind = obj["type"]
    if kind in bodies:
        _shape(obj, path, ((kind, dict, True),))
        _shape(obj[kind], f"{path}.{kind}", bodies[kind])


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _fail("stop", "'stop' must be a string or an array of strings.", "invalid_type")
    if len(stop) > 4:
        raise _fail("stop", "'stop' may hold at most 4 sequences.", "invalid_value")


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _fail("tools", "'tools' must be an array.", "invalid_type")
        for i, tool in enumerate(tools):
            _typed(_object(tool, f"tools[{i}]"), f"tools[{i}]", _TOOL_BODIES)
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _fail("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or a named function.",
                        "invalid_value")
        return
    if not isinstance(choice, dict):
        raise _fail("tool_choice", "'tool_choice' must be a string or an object.", "invalid_type")
    fn = choice.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _fail("tool_choice.function.name", "a named 'tool_choice' needs 'tool_choice.function.name', a string.",
                    "missing_required_parameter")


def _response_format(fmt: Any) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _fail("response_format", "'response_format' must be an object.", "invalid_type")
    kind = fmt.get("type")
    if kind is None:
        raise _fail("response_format.type", "'response_format.type' is required.", "missing_required_parameter")
    if kind not in _FORMATS:
        raise _fail("response_format.type", "'response_format.type' must be text, json_object or json_schema.",
                    "invalid_value")
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        if schema is None:
            raise _fail("response_format.json_schema", "'response_format.json_schema' is required for json_schema.",
                        "missing_required_parameter")
        if not isinstance(schema, dict):
            raise _fail("response_format.json_schema", "'response_format.json_schema' must be an object.",
                        "invalid_type")


def _thinking(thinking: Any) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise _fail("thinking", "'thinking' must be an object.", "invalid_type")
    kind = thinking.get("type")
    if kind is None:
        raise _fail("thinking.type", "'thinking.type' is required.", "missing_required_parameter")
    if kind not in ("enabled", "disabled"):
        raise _fail("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'.", "invalid_value")
    budget = thinking.get("budget_tokens")
    if budget is not None:
        _count(budget, "thinking.budget_tokens")


def _max_tokens(body: dict[str, Any]) -> None:
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is None:
            continue
        _count(v, name)


def _logprobs(body: dict[str, Any]) -> None:
    _boolean(body, "logprobs")
    top = body.get("top_logprobs")
    if top is None:
        return
    if not _is_int(top):
        raise _fail("top_logprobs", "'top_logprobs' must be an integer.", "invalid_type")
    if not 0 <= top <= 20:
        raise _fail("top_logprobs", "'top_logprobs' must be between 0 and 20.", "invalid_value")
    if body.get("logprobs") is not True:
        raise _fail("top_logprobs", "'top_logprobs' requires 'logprobs': true.", "invalid_value")


def _stream(body: dict[str, Any]) -> None:
    _boolean(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise _fail("stream_options", "'stream_options' must be an object.", "invalid_type")
    if body.get("stream") is not True:
        raise _fail("stream_options", "'stream_options' is only allowed with 'stream': true.", "invalid_value")
    include = options.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise _fail("stream_options.include_usage", "'stream_options.include_usage' must be a boolean.",
                    "invalid_type")


def model_name(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _fail("model", "'model' is required.", "missing_required_parameter")
    if not isinstance(model, str):
        raise _fail("model", "'model' must be a string.", "invalid_type")
    return model


def unsupported_present(body: dict[str, Any]) -> list[str]:
    """Parameters the gateway cannot honour; `n: 1` is harmless and not one."""
    found = [name for name in UNSUPPORTED if body.get(name) is not None]
    if "n" in found and body["n"] == 1:
        found.remove("n")
    return found


def validate(body: dict[str, Any], drop_unsupported: bool) -> list[str]:
    """Check every rule; return the names of dropped parameters (may be empty)."""
    _messages(body.get("messages"))
    _stream(body)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "presence_penalty", -2, 2)
    _max_tokens(body)
    _stop(body.get("stop"))
    _tools(body)
    _response_format(body.get("response_format"))
    _logprobs(body)
    _thinking(body.get("thinking"))
    _boolean(body, "parallel_tool_calls")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _fail("user", "'user' must be a string.", "invalid_type")
    n = body.get("n")
    if n is not None and (not _is_int(n) or n < 1):
        raise _fail("n", "'n' must be a positive integer.", "invalid_type" if not _is_int(n) else "invalid_value")
    found = unsupported_present(body)
    if not found:
        return []
    if not drop_unsupported:
        name = found[0]
        raise _fail(name, f"'{name}' is not supported by this gateway"
                    + (" (only n=1)." if name == "n" else "."), "unsupported_parameter")
    for name in found:
        del body[name]
    return found


def thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"

