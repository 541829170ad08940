"""Anthropic Messages in front: `POST /v1/messages` (SPEC section 10.1), for Claude Code and Anthropic's SDKs.

The body is checked (`messages_params`), kept as is for Anthropic targets
(`native`), and turned neutral for every other dialect (`messages_decode`);
answers and streams go back as Anthropic's `message` and events (`messages_encode`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.dialects.base import Completion, Usage
from gateway.front import chat_params, messages_params
from gateway.front.base import ClientRequest
from gateway.front.messages_decode import to_chat
from gateway.front.messages_encode import MessagesStream, message_body

name = "messages"
path = "/v1/messages"
endpoint = "messages"
envelope = "anthropic"
thinking_optional = True   # Claude Code asks for thinking by default: a route that cannot think answers without
ID_PREFIX = "msg_"
FORWARDED = ("anthropic-version", "anthropic-beta")


def model_name(body: dict[str, Any]) -> str:
    return chat_params.model_name(body)


def decode(body: dict[str, Any], drop_unsupported: bool, headers: Mapping[str, str]) -> ClientRequest:
    """Anthropic's rules first, then the chat rules over the translation: no dialect meets an unchecked shape."""
    messages_params.validate(body)
    neutral, unseen = to_chat(body)
    chat_params.validate(neutral, drop_unsupported)
    thinking = body.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    forward = {h: headers[h] for h in FORWARDED if h in headers}
    return ClientRequest(neutral, stream=body.get("stream") is True, thinking=enabled, api=name, native=body,
                         forward=forward, unseen=unseen)


def answer(done: Completion, request_id: str, created: int, route: str, prompt: int) -> tuple[bytes, Usage, bool]:
    body, usage, estimated = message_body(done, ID_PREFIX + request_id, route, prompt)
    return orjson.dumps(body), usage, estimated


def stream_encoder(request_id: str, created: int, route: str, include_usage: bool, prompt: int) -> MessagesStream:
    return MessagesStream(ID_PREFIX + request_id, route, prompt)
