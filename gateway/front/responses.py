"""OpenAI Responses in front: `POST /v1/responses` (SPEC section 10.2), for Codex and `client.responses`.

The body is checked (`responses_params`), kept as is for a target that speaks Responses
(`native`), and turned neutral for every other dialect (`responses_decode`); answers and streams
go back as a `response` and its typed events (`responses_encode`, `responses_stream`), which
repeat the request's settings, so each request gets an answerer of its own. A request naming
`previous_response_id` is `recall`ed by the core, which hands the stored conversation to
`resume`; an answer with `store` on is kept with the whole conversation it answered.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.dialects.base import Completion, Usage
from gateway.errors import InvalidRequest
from gateway.front import chat_params, responses_params
from gateway.front.base import ClientRequest, StreamEncoder
from gateway.front.responses_decode import input_items, to_chat
from gateway.front.responses_encode import response_body
from gateway.front.responses_stream import ResponsesStream

name = "responses"
path = "/v1/responses"
endpoint = "responses"
envelope = "openai"
thinking_optional = True   # Codex sends reasoning.effort whatever the model: a route that cannot think answers without
ID_PREFIX = "resp_"


def model_name(body: dict[str, Any]) -> str:
    return chat_params.model_name(body)


def decode(body: dict[str, Any], drop_unsupported: bool, headers: Mapping[str, str]) -> ClientRequest:
    """Every rule first. A request continuing a stored response is only checked here: the core recalls the
    conversation and `resume` translates it whole."""
    responses_params.validate(body)
    previous = body.get("previous_response_id")
    if previous is not None:
        return ClientRequest({}, stream=body.get("stream") is True, api=name, native=body, recall=previous,
                             keep=body.get("store") is not False)
    return _request(body, body, input_items(body), None, drop_unsupported)


def resume(asked: ClientRequest, items: list[dict[str, Any]], output: list[dict[str, Any]]) -> ClientRequest:
    """`asked` after the stored conversation (its items, then the stored answer's output), as one input:
    what a target that speaks Responses is sent too, since our response ids mean nothing to it."""
    body = asked.native or {}
    said = [item for item in output if isinstance(item, dict)]
    for i, item in enumerate(said):   # ours, or a checked upstream's: checked again, as any input is
        responses_params.check_item(item, f"previous_response_id.output[{i}]")
    conversation = [*items, *said, *input_items(body)]
    native = {k: v for k, v in body.items() if k != "previous_response_id"}
    native["input"] = conversation
    return _request(body, native, conversation, asked.recall, False)


def _request(body: dict[str, Any], native: dict[str, Any], items: list[dict[str, Any]], recall: str | None,
             drop_unsupported: bool) -> ClientRequest:
    if not items:
        raise InvalidRequest("'input' must hold at least one item.", param="input")
    neutral, unseen = to_chat(body, items)
    dropped = chat_params.validate(neutral, drop_unsupported)
    thinking = neutral.get("thinking")
    asked = ClientRequest(neutral, stream=body.get("stream") is True, dropped=dropped, api=name, native=native,
                          unseen=unseen, recall=recall, keep=body.get("store") is not False,
                          thinking=isinstance(thinking, dict) and thinking.get("type") == "enabled")
    asked.answerer = _Answerer(asked)
    return asked


def conversation(asked: ClientRequest) -> list[dict[str, Any]]:
    return input_items(asked.native or {})


def stored_answer(encoder: StreamEncoder) -> bytes | None:
    final = getattr(encoder, "final", None)
    return orjson.dumps(final) if isinstance(final, dict) else None


class _Answerer:
    """This request's answers: they repeat its settings (instructions, tools, metadata, ...)."""

    __slots__ = ("asked",)

    def __init__(self, asked: ClientRequest):
        self.asked = asked

    def answer(self, done: Completion, request_id: str, created: int, route: str,
               prompt: int) -> tuple[bytes, Usage, bool]:
        body, usage, estimated = response_body(done, ID_PREFIX + request_id, created, route, prompt, self.asked)
        return orjson.dumps(body), usage, estimated

    def stream_encoder(self, request_id: str, created: int, route: str, include_usage: bool,
                       prompt: int) -> ResponsesStream:
        return ResponsesStream(ID_PREFIX + request_id, created, route, prompt, self.asked)


def answer(done: Completion, request_id: str, created: int, route: str, prompt: int) -> tuple[bytes, Usage, bool]:
    """Without the request (never so in the core: `decode` binds an answerer to each request)."""
    return _Answerer(ClientRequest({})).answer(done, request_id, created, route, prompt)


def stream_encoder(request_id: str, created: int, route: str, include_usage: bool, prompt: int) -> ResponsesStream:
    return ResponsesStream(ID_PREFIX + request_id, created, route, prompt, ClientRequest({}))
