"""The built-in offline upstream: deterministic answers with real token counts.

It speaks the OpenAI wire format (so its answers take the same decoding path as
a real upstream) but answers in-process. The target's model picks the act:
`echo` repeats the last user message; any other model answers with a fixed
sentence. A model whose name contains `reason`, or a request with thinking
enabled, reasons first; one whose name contains `cached` reports half its
prompt as read from a cache. `tool_choice: required` or a named tool yields a call.
"""
from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects import embeddings as _embeddings
from gateway.dialects import openai as _openai
from gateway.dialects.base import TargetView, UpstreamRequest, largest_count
from gateway.tokens import count_words  # what a tokenizer would bill: no safety margin

name = "mock"
needs_base_url = False   # the routes.yaml provider must say where it is
native_api: str | None = None   # no client API is sent to it as is: chat bodies are rebuilt
transport = "local"   # answered in-process: the local transport calls `answer` / `stream_events`

parse_response = _openai.parse_response
parse_embeddings = _embeddings.parse
EMBEDDINGS_URL = "mock://local/embeddings"
stream_decoder = _openai.stream_decoder
error_message = _openai.error_message

_SENTENCE = ("This is the mock provider of the gateway answering offline with a fixed and "
             "deterministic sentence of exactly twenty words.")
_REASONING = "The user asked something; a short plan helps before answering."


def build_request(body: dict[str, Any], target: TargetView, stream: bool) -> UpstreamRequest:
    payload = dict(body)
    payload["model"] = target.model
    payload["stream"] = stream
    return UpstreamRequest("mock://local", {}, payload)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or ()):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
            return content if isinstance(content, str) else ""
    return ""


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts) if p or i == 0]


def _within(words: list[str], limit: int, used: int) -> tuple[list[str], int]:
    """The leading words that fit in `limit` tokens after `used`, and the tokens then used."""
    kept = []
    for word in words:
        cost = count_words(word)
        if used + cost > limit:
            break
        kept.append(word)
        used += cost
    return kept, used


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The function a `required` or named tool_choice makes the mock call (custom tools it cannot call)."""
    choice, tools = body.get("tool_choice"), body.get("tools")
    if not tools:
        return None
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    if choice != "required":
        return None
    return next((t["function"]["name"] for t in tools if t.get("type") == "function"), None)


def _plan(body: dict[str, Any]) -> dict[str, Any]:
    """What the mock will say, decided once for both shapes of answer."""
    model = body["model"]
    thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    reasoning = _words(_REASONING) if thinking or "reason" in model else []
    text = _last_user_text(body) if model == "echo" else _SENTENCE
    words = _words(text)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    tool = None
    fn = _forced_tool(body)
    if fn is not None:
        tool = {"id": "call_mock_0", "type": "function", "function": {"name": fn, "arguments": "{}"}}
        words, finish = [], "tool_calls"
    if limit is not None:   # as a real provider: reasoning, text and the call all bill inside the limit
        wanted = (len(reasoning), len(words), tool)
        reasoning, used = _within(reasoning, limit, 0)
        words, used = _within(words, limit, used)
        if tool and used + 2 > limit:
            tool = None
        if (len(reasoning), len(words), tool) != wanted:
            finish = "length"
    prompt = sum(4 + count_words(m.get("content") if isinstance(m.get("content"), str) else "")
                 for m in body.get("messages") or ()) + 3
    reasoning_tokens = count_words("".join(reasoning))
    completion = count_words("".join(words)) + reasoning_tokens + (2 if tool else 0)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
    if "cached" in model:   # on cue: half the prompt read from a cache, as OpenAI reports it
        usage["prompt_tokens_details"] = {"cached_tokens": prompt // 2}
    return {"model": model, "reasoning": reasoning, "words": words, "tool": tool, "finish": finish, "usage": usage}


def build_embeddings(body: dict[str, Any], target: TargetView) -> UpstreamRequest:
    return UpstreamRequest(EMBEDDINGS_URL, {}, {**body, "model": target.model})


def answer(req: UpstreamRequest) -> dict[str, Any]:
    if req.url == EMBEDDINGS_URL:
        return _embeddings.mock_answer(req.body)
    plan = _plan(req.body)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(plan["words"]) if not plan["tool"] else None,
                               "refusal": None}
    if plan["reasoning"]:
        message["reasoning_content"] = "".join(plan["reasoning"])
    if plan["tool"]:
        message["tool_calls"] = [plan["tool"]]
    return {"id": "mock-1", "object": "chat.completion", "created": 0, "model": plan["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan["finish"]}],
            "usage": plan["usage"]}


def stream_events(req: UpstreamRequest) -> list[bytes]:
    plan = _plan(req.body)
    head = b'data: {"id":"mock-1","object":"chat.completion.chunk","created":0,"model":' + orjson.dumps(plan["model"])

    def event(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []
        tail = b',"usage":' + orjson.dumps(usage) if usage is not None else b""
        return head + b',"choices":' + orjson.dumps(choices) + tail + b"}\n\n"

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"reasoning_content": w}) for w in plan["reasoning"]]
    events += [event({"content": w}) for w in plan["words"]]
    if plan["tool"]:
        events.append(event({"tool_calls": [{"index": 0, **plan["tool"]}]}))
    events.append(event({}, plan["finish"]))
    events.append(event({}, usage=plan["usage"]))
    events.append(b"data: [DONE]\n\n")
    return events


def output_cap(sent: dict[str, Any]) -> int | None:
    """The most output tokens the upstream may bill for the body `build_request` made (None: no bound sent).

    Budget reservations are computed from this, after every dialect and `thinking` adjustment.
    """
    return largest_count(sent, "max_tokens", "max_completion_tokens")
