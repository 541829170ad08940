"""The OpenAI chat-completions dialect, and every upstream that copies it.

DeepSeek's `reasoning_content`, the `reasoning` field of OpenRouter, vLLM and
Groq, Mistral's index-less tool calls and usage in the last chunk all arrive
here and leave as neutral `Delta`s.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects import embeddings as _embeddings
from gateway.dialects.base import (
    Completion,
    Delta,
    SSEEvent,
    TargetView,
    UpstreamError,
    UpstreamRequest,
    Usage,
    checked_usage,
    largest_count,
)

name = "openai"
needs_base_url = True   # the routes.yaml provider must say where it is
native_api: str | None = None   # no client API is sent to it as is: chat bodies are rebuilt

_REASONING_FIELDS = ("reasoning_content", "reasoning_signature")
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


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
    """`prompt_tokens` counts cached ones too; `prompt_tokens_details.cached_tokens` says how many (DeepSeek
    also says `prompt_cache_hit_tokens`). Checked by `checked_usage` before any budget or ledger sees it."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("completion_tokens_details")
    prompt_details = raw.get("prompt_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = raw.get("prompt_cache_hit_tokens")
    return checked_usage(raw.get("prompt_tokens"), raw.get("completion_tokens"),
                         details.get("reasoning_tokens") if isinstance(details, dict) else None, cached)


def _finish(reason: Any) -> str | None:
    """OpenAI's four reasons; one an upstream invents (`eos`, `insufficient_system_resource`) ends as `stop`."""
    if not reason:
        return None   # some upstreams send "" on chunks that do not finish
    return reason if isinstance(reason, str) and reason in _FINISH_REASONS else "stop"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _tool_calls(raw: Any) -> list[dict[str, Any]] | None:
    """Tool-call objects only; `arguments` given as an object (some upstreams) become the JSON text."""
    if not isinstance(raw, list):
        return None
    calls = [c for c in raw if isinstance(c, dict)]
    for i, call in enumerate(calls):
        fn = call.get("function")
        if isinstance(fn, dict) and not isinstance(fn.get("arguments"), (str, type(None))):
            calls[i] = {**call, "function": {**fn, "arguments": orjson.dumps(fn["arguments"]).decode()}}
    return calls or None


def error_message(data: Any) -> str | None:
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("type") or "upstream error")
        if isinstance(err, str):
            return err
    return None


def parse_response(data: Any) -> Completion:
    message = error_message(data)
    choices = data.get("choices") if isinstance(data, dict) else None
    if message is not None or not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError(message or "upstream answer has no choices")
    choice = choices[0]
    msg = choice.get("message")
    msg = msg if isinstance(msg, dict) else {}
    content, reasoning = _content_and_reasoning(msg)
    logprobs = choice.get("logprobs")
    return Completion(content=content, reasoning=reasoning, refusal=_text(msg.get("refusal")),
                      tool_calls=_tool_calls(msg.get("tool_calls")),
                      finish_reason=_finish(choice.get("finish_reason")) or "stop",
                      usage=parse_usage(data.get("usage")), logprobs=logprobs if isinstance(logprobs, dict) else None)


def _part_text(value: Any) -> str:
    """A part's text: a string, or (Mistral's thinking) a list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _content_parts(parts: list[Any]) -> tuple[str, str]:
    """(text, thinking) of content given as parts, e.g. Mistral Magistral's `thinking` parts."""
    text, thinking = [], []
    for part in parts:
        if isinstance(part, dict):
            if part.get("type") == "thinking":
                thinking.append(_part_text(part.get("thinking")) or _part_text(part.get("text")))
            else:
                text.append(_part_text(part.get("text")))
    return "".join(text), "".join(thinking)


def _content_and_reasoning(d: dict[str, Any]) -> tuple[str | None, str | None]:
    """Content and reasoning of a message or delta, whichever field or part form carries them."""
    content = d.get("content")
    reasoning = _text(d.get("reasoning_content")) or _text(d.get("reasoning"))
    if isinstance(content, list):
        content, thinking = _content_parts(content)
        reasoning = (reasoning or "") + thinking or None
    return _text(content), reasoning


def _first_choice(choices: Any) -> dict[str, Any] | None:
    """The choice with index 0 (usually the only one, first in the list)."""
    if not isinstance(choices, list) or not choices:
        return None
    first = choices[0]
    if isinstance(first, dict) and first.get("index", 0) == 0:
        return first
    return next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)


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
        if obj.get("error") is not None:
            raise UpstreamError(error_message(obj) or "upstream error")
        # Nearly every event is some text and nothing else: it takes the shortest way to the Delta `_deltas`
        # would make of it. Every other event goes the whole way.
        if obj.get("usage") is None:
            choices = obj.get("choices")
            choice = choices[0] if choices.__class__ is list and choices else None
            if choice.__class__ is dict and choice.get("index", 0) == 0:
                d = choice.get("delta")
                if d.__class__ is dict:
                    content = d.get("content")
                    if content.__class__ is str and (len(d) == 1 or (len(d) == 2 and "role" in d)) \
                            and not choice.get("finish_reason") and choice.get("logprobs").__class__ is not dict:
                        return [Delta(content)]
        return _deltas(obj)

    def finish(self) -> list[Delta]:
        return []


def _deltas(obj: dict[str, Any]) -> list[Delta]:
    """What one stream event (an object, not an error) says; helpers run only for fields that are there."""
    usage = obj.get("usage")
    usage = parse_usage(usage) if usage is not None else None
    choice = _first_choice(obj.get("choices"))
    if choice is None:
        return [Delta(usage=usage)] if usage else []
    d = choice.get("delta")
    d = d if isinstance(d, dict) else {}
    content, reasoning = _content_and_reasoning(d)
    refusal, calls, finish = d.get("refusal"), d.get("tool_calls"), choice.get("finish_reason")
    logprobs = choice.get("logprobs")
    return [Delta(content=content, reasoning=reasoning, refusal=refusal if isinstance(refusal, str) else None,
                  tool_calls=_tool_calls(calls) if calls is not None else None,
                  finish_reason=_finish(finish) if finish else None,
                  usage=usage, logprobs=logprobs if isinstance(logprobs, dict) else None)]


def stream_decoder(native: bool = False) -> StreamDecoder:
    return StreamDecoder()


def output_cap(sent: dict[str, Any]) -> int | None:
    """The most output tokens the upstream may bill for the body `build_request` made (None: no bound sent).

    Budget reservations are computed from this, after every dialect and `thinking` adjustment. A
    forwarded `thinking.budget_tokens` is added: OpenAI-compatible providers differ on whether it
    counts inside `max_tokens`, so the reservation assumes it does not.
    """
    cap = largest_count(sent, "max_tokens", "max_completion_tokens")
    thinking = sent.get("thinking")
    if cap is not None and isinstance(thinking, dict) and thinking.get("type") == "enabled":
        cap += largest_count(thinking, "budget_tokens") or 0
    return cap


build_embeddings = _embeddings.build_request   # `/v1/embeddings` to `base_url` + `/embeddings`
parse_embeddings = _embeddings.parse
