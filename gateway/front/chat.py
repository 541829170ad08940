"""OpenAI chat completions in front: `POST /v1/chat/completions` (SPEC section 5).

The neutral request is already this API's body, so decoding is validation; the
answer is a `chat.completion` and the stream `chat.completion.chunk` events.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.dialects.base import Completion, Usage
from gateway.front import chat_params as protocol
from gateway.front.base import ClientRequest
from gateway.front.chat_encode import ChunkBuilder, completion_body

name = "chat"
path = "/v1/chat/completions"
endpoint = "chat.completions"
envelope = "openai"
ID_PREFIX = "chatcmpl-"


def model_name(body: dict[str, Any]) -> str:
    """The route the client asked for (checked first: an unknown model is 404 before any other rule)."""
    return protocol.model_name(body)


def decode(body: dict[str, Any], drop_unsupported: bool, headers: Mapping[str, str]) -> ClientRequest:
    """Every rule of the parameter table (400 naming the field), then the neutral request."""
    dropped = protocol.validate(body, drop_unsupported)
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    return ClientRequest(body, stream, include_usage, protocol.thinking_enabled(body), dropped)


def answer(done: Completion, request_id: str, created: int, route: str, prompt: int) -> tuple[bytes, Usage, bool]:
    """The whole answer's bytes, the usage to book, and whether it was estimated."""
    body, usage, estimated = completion_body(done, ID_PREFIX + request_id, created, route, prompt)
    return orjson.dumps(body), usage, estimated


def stream_encoder(request_id: str, created: int, route: str, include_usage: bool, prompt: int) -> ChunkBuilder:
    return ChunkBuilder(ID_PREFIX + request_id, created, route, include_usage, prompt)
