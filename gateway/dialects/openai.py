"""The OpenAI chat-completions dialect, and every upstream that copies it.

DeepSeek's `reasoning_content`, the `reasoning` field of OpenRouter, vLLM and
Groq, Mistral's index-less tool calls and usage in the last chunk all arrive
here and leave as neutral `Delta`s.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.base import Completion, Delta, SSEEvent, TargetView, UpstreamError, UpstreamRequest, Usage

name = "openai"

_REASONING_FIELDS = ("reasoning_content", "reasoning_signature")


def _messages_for(messages: list[dict[str, Any]], keep_reasoning: bool) -> list[dict[str, Any]]:
    """Strip the gateway's reasoning fields unless the target takes reasoning back natively."""
    drop = ("reasoning_signature",) if keep_reasoning else _REASONING_FIELDS
    if not any(f in m for m in messages for f in drop):
        return messages
    return [{k: v for k, v in m.items() if k not in drop} for m in messages]


def build_request(body: dict[str, Any], target: TargetView, stream: bool) -> UpstreamRequest:
    payload = dict(body)
    payload["model"] = target.model
    payload["messages"] = _messages_for(body["messages"], target.thinking == "native")
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}   # the ledger needs usage either way
    else:
        payload.pop("stream_options", None)
    headers = {"content-type": "application/json"}
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    headers.update(target.headers)
    return UpstreamRequest(f"{(target.base_url or '').rstrip('/')}/chat/completions", headers, payload)


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("completion_tokens_details") or {}
    prompt_details = raw.get("prompt_tokens_details") or {}
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0),
                 details.get("reasoning_tokens"), prompt_details.get("cached_tokens"))


def error_message(data: Any) -> str | None:
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("type") or "upstream error")
        if isinstance(err, str):
            return err
    return None


def parse_response(data: dict[str, Any]) -> Completion:
    message = error_message(data)
    choices = data.get("choices")
    if message is not None or not isinstance(choices, list) or not choices:
        raise UpstreamError(message or "upstream answer has no choices")
    choice = choices[0]
    msg = choice.get("message") or {}
    content = msg.get("content")
    if isinstance(content, list):   # content parts, some of them thinking
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") != "thinking")
    return Completion(content=content, reasoning=msg.get("reasoning_content") or msg.get("reasoning"),
                      refusal=msg.get("refusal"), tool_calls=msg.get("tool_calls") or None,
                      finish_reason=choice.get("finish_reason") or "stop", usage=parse_usage(data.get("usage")),
                      logprobs=choice.get("logprobs"))


def _content_parts(parts: list[Any]) -> tuple[str, str]:
    text, thinking = [], []
    for part in parts:
        if isinstance(part, dict):
            (thinking if part.get("type") == "thinking" else text).append(part.get("text") or part.get("thinking") or "")
    return "".join(text), "".join(thinking)


class StreamDecoder:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, event: SSEEvent) -> list[Delta]:
        data = event.data
        if data == "[DONE]":
            self.done = True
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent a malformed stream event") from None
        if not isinstance(obj, dict):
            raise UpstreamError("upstream sent a malformed stream event")
        if "error" in obj:
            raise UpstreamError(error_message(obj) or "upstream error")
        usage = parse_usage(obj.get("usage"))
        choices = obj.get("choices") or ()
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if choice is None:
            return [Delta(usage=usage)] if usage else []
        d = choice.get("delta") or {}
        content = d.get("content")
        reasoning = d.get("reasoning_content") or d.get("reasoning")
        if isinstance(content, list):
            content, thinking = _content_parts(content)
            reasoning = (reasoning or "") + thinking or None
        return [Delta(content=content, reasoning=reasoning if isinstance(reasoning, str) else None,
                      refusal=d.get("refusal"), tool_calls=d.get("tool_calls") or None,
                      finish_reason=choice.get("finish_reason"), usage=usage, logprobs=choice.get("logprobs"))]

    def finish(self) -> list[Delta]:
        return []


def stream_decoder() -> StreamDecoder:
    return StreamDecoder()
