"""What the fake upstream answers on `POST /v1/responses` (OpenAI's Responses API) by default.

A whole `response` object, or a recorded Responses stream; `greedy` bills every output token the
request allowed (`max_output_tokens`), `cache` reports prompt-cache reads, as the other dialects do.
"""
from __future__ import annotations

import json
from typing import Any

RECORDED = "openai-responses/text-two-messages.sse"   # the default stream: a recording


def response_object(text: str = "Hello from upstream", model: str = "up-model", status: str = "completed",
                    usage: dict[str, Any] | None = None, reason: str | None = None) -> dict[str, Any]:
    return {"id": "resp_up", "object": "response", "created_at": 1, "status": status, "error": None,
            "incomplete_details": {"reason": reason} if reason else None, "model": model,
            "output": [{"id": "msg_up", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": usage if usage is not None else {
                "input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 7,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 18}}


def responses_sse(pieces: list[str], model: str = "up-model", usage: dict[str, Any] | None = None,
                  status: str = "completed", reason: str | None = None) -> bytes:
    """A Responses stream of one message whose text arrives in these pieces, ending `status`."""
    done = response_object("".join(pieces), model, status, usage, reason)
    start = {**done, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    item = {"id": "msg_up", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": start},
                                    {"type": "response.in_progress", "response": start},
                                    {"type": "response.output_item.added", "output_index": 0, "item": item},
                                    {"type": "response.content_part.added", "item_id": "msg_up", "output_index": 0,
                                     "content_index": 0, "part": {"type": "output_text", "text": ""}}]
    events += [{"type": "response.output_text.delta", "item_id": "msg_up", "output_index": 0, "content_index": 0,
                "delta": p} for p in pieces]
    events += [{"type": "response.output_text.done", "item_id": "msg_up", "output_index": 0, "content_index": 0,
                "text": "".join(pieces)},
               {"type": "response.output_item.done", "output_index": 0, "item": done["output"][0]},
               {"type": "response.incomplete" if status == "incomplete" else "response.completed", "response": done}]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n".encode()
                    for n, e in enumerate(events))


def default_answer(body: dict[str, Any], greedy: bool, cache: Any, recorded: bytes) -> tuple[Any, bytes | None]:
    """(json, sse) the fake answers a Responses request with when nothing was queued."""
    model = body.get("model", "")
    usage = None
    if greedy:
        cap = body.get("max_output_tokens")
        out = cap if isinstance(cap, int) else 100_000
        usage = {"input_tokens": 10, "output_tokens": out, "total_tokens": 10 + out}
    elif cache is not None:
        o = cache.openai_usage()
        usage = {"input_tokens": o["prompt_tokens"], "input_tokens_details": {"cached_tokens": cache.read},
                 "output_tokens": cache.output, "total_tokens": o["total_tokens"]}
    if not body.get("stream"):
        return response_object(model=model, usage=usage, status="incomplete" if greedy else "completed",
                               reason="max_output_tokens" if greedy else None), None
    if usage is None:
        return None, recorded
    return None, responses_sse(["Hi"], model, usage, "incomplete" if greedy else "completed",
                               "max_output_tokens" if greedy else None)
