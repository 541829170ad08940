"""The OpenAI chat-completions request rules (SPEC section 5).

Hand-written rather than a pydantic model: it runs on every request, and each
violation must name the exact field path and one of four codes.
"""
from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest

UNSUPPORTED = ("n", "seed", "logit_bias")
_TOOL_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")


def _fail(param: str, message: str, code: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: dict, name: str, low: float, high: float) -> None:
    v = body.get(name)
    if v is None:
        return
    if not _is_number(v):
        raise _fail(name, f"'{name}' must be a number.", "invalid_type")
    if not low <= v <= high:
        raise _fail(name, f"'{name}' must be between {low:g} and {high:g}; got {v}.", "invalid_value")


def _boolean(body: dict, name: str) -> None:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise _fail(name, f"'{name}' must be a boolean.", "invalid_type")


def _messages(messages: Any) -> None:
    if messages is None:
        raise _fail("messages", "'messages' is required.", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _fail("messages", "'messages' must be an array of message objects.", "invalid_type")
    if not messages:
        raise _fail("messages", "'messages' must contain at least one message.", "invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(f"messages[{i}]", f"'messages[{i}]' must be an object.", "invalid_type")
        role = message.get("role")
        if role is None:
            raise _fail(f"messages[{i}].role", f"'messages[{i}].role' is required.", "missing_required_parameter")
        if not isinstance(role, str):
            raise _fail(f"messages[{i}].role", f"'messages[{i}].role' must be a string.", "invalid_type")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _fail(f"messages[{i}].content", f"'messages[{i}].content' must be a string or an array of parts.",
                        "invalid_type")


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _fail("stop", "'stop' must be a string or an array of strings.", "invalid_type")
    if len(stop) > 4:
        raise _fail("stop", "'stop' may hold at most 4 sequences.", "invalid_value")


def _tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _fail("tools", "'tools' must be an array.", "invalid_type")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _fail(f"tools[{i}]", f"'tools[{i}]' must be an object.", "invalid_type")
            fn = tool.get("function")
            if not isinstance(fn, dict):
                raise _fail(f"tools[{i}].function", f"'tools[{i}].function' is required.", "missing_required_parameter")
            if not isinstance(fn.get("name"), str):
                raise _fail(f"tools[{i}].function.name", f"'tools[{i}].function.name' is required.",
                            "missing_required_parameter")
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
        if not _is_int(budget):
            raise _fail("thinking.budget_tokens", "'thinking.budget_tokens' must be an integer.", "invalid_type")
        if budget < 1:
            raise _fail("thinking.budget_tokens", "'thinking.budget_tokens' must be at least 1.", "invalid_value")


def _max_tokens(body: dict) -> None:
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is None:
            continue
        if not _is_int(v):
            raise _fail(name, f"'{name}' must be an integer.", "invalid_type")
        if v < 1:
            raise _fail(name, f"'{name}' must be at least 1.", "invalid_value")


def _logprobs(body: dict) -> None:
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


def _stream(body: dict) -> None:
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


def model_name(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise _fail("model", "'model' is required.", "missing_required_parameter")
    if not isinstance(model, str):
        raise _fail("model", "'model' must be a string.", "invalid_type")
    return model


def unsupported_present(body: dict) -> list[str]:
    """Parameters the gateway cannot honour; `n: 1` is harmless and not one."""
    found = [name for name in UNSUPPORTED if body.get(name) is not None]
    if "n" in found and body["n"] == 1:
        found.remove("n")
    return found


def validate(body: dict, drop_unsupported: bool) -> list[str]:
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


def thinking_enabled(body: dict) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def max_output_tokens(body: dict) -> int | None:
    v = body.get("max_completion_tokens")
    return v if v is not None else body.get("max_tokens")
