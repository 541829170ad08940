"""OpenAI embeddings in front: `POST /v1/embeddings` (SPEC section 10.3).

No chat shape fits a list of vectors, so the neutral request is the embeddings body
itself (`native`), and only dialects that can embed (`build_embeddings`) are
planned for it. TPM and budget reservations count the input tokens; the answer's
vectors come from the dialect, checked, under the route's name.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.dialects.base import Completion, Usage
from gateway.errors import InvalidRequest
from gateway.front import chat_params
from gateway.front.base import ClientRequest
from gateway.tokens import count_text

name = "embeddings"
path = "/v1/embeddings"
endpoint = "embeddings"
envelope = "openai"
MAX_INPUTS = 2048
_FORMATS = ("float", "base64")


def _fail(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def model_name(body: dict[str, Any]) -> str:
    return chat_params.model_name(body)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _inputs(value: Any) -> int:
    """Check `input` (a string, strings, a token array or token arrays); the tokens it holds."""
    if value is None:
        raise _fail("input", "'input' is required.", "missing_required_parameter")
    if isinstance(value, str):
        if not value:
            raise _fail("input", "'input' may not be an empty string.")
        return count_text(value)
    if not isinstance(value, list) or not value:
        raise _fail("input", "'input' must be a string or a non-empty array of strings or token arrays.",
                    "invalid_type")
    if len(value) > MAX_INPUTS:
        raise _fail("input", f"'input' may hold at most {MAX_INPUTS} items; got {len(value)}.")
    if all(_is_int(t) for t in value):
        return len(value)           # one token array
    tokens = 0
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            tokens += count_text(item)
        elif isinstance(item, list) and item and all(_is_int(t) for t in item):
            tokens += len(item)
        else:
            raise _fail(f"input[{i}]", f"'input[{i}]' must be a non-empty string or array of token ids.",
                        "invalid_type")
    return tokens


def decode(body: dict[str, Any], drop_unsupported: bool, headers: Mapping[str, str]) -> ClientRequest:
    tokens = _inputs(body.get("input"))
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in _FORMATS:
        raise _fail("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or not 1 <= dimensions <= 65536):
        raise _fail("dimensions", "'dimensions' must be an integer from 1 to 65536.", "invalid_type")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _fail("user", "'user' must be a string.", "invalid_type")
    return ClientRequest({"model": body["model"], "messages": []}, api=name, native=body, unseen=tokens)


def answer(done: Completion, request_id: str, created: int, route: str, prompt: int,
           asked: ClientRequest | None = None) -> tuple[bytes, Usage, bool]:
    """The list the dialect read (its vectors checked there), under the route's name."""
    items = done.native[1]["items"] if done.native is not None and done.native[0] == name else []
    usage, estimated = done.usage, done.usage is None
    if usage is None:
        usage = Usage(prompt, 0)
    data = b",".join(b'{"object":"embedding","index":%d,"embedding":%b}' % (i, vector) for i, vector in items)
    tail = orjson.dumps({"model": route, "usage": {"prompt_tokens": usage.prompt_tokens,
                                                   "total_tokens": usage.prompt_tokens}})
    body = b'{"object":"list","data":[' + data + b"]," + tail[1:]   # vectors as the dialect wrote them
    return body, Usage(usage.prompt_tokens, 0, None, usage.cached_tokens), estimated


def stream_encoder(request_id: str, created: int, route: str, include_usage: bool, prompt: int,
                   asked: ClientRequest | None = None) -> Any:
    raise InvalidRequest("Embeddings are not streamed.", param="stream")   # decode never asks for a stream
