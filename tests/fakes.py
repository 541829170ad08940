"""A scripted fake provider on a real port, speaking the OpenAI (chat and Responses) and Anthropic dialects.

Tests queue behaviours (`upstream.queue(...)`); each upstream request takes the
next one, or the default answer when the queue is empty. Every request body the
gateway sent is kept in `upstream.requests` for assertions.
"""
from __future__ import annotations

import asyncio
import base64
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes_responses import RECORDED as RESPONSES_RECORDED
from tests.fakes_responses import default_answer as responses_answer

FIXTURES = Path(__file__).parent / "fixtures"
COUNTED = 4242   # what the fake Anthropic's count_tokens says, whatever the body


@dataclass
class Behaviour:
    status: int = 200
    json: Any = None                 # a whole JSON body
    sse: bytes | None = None         # a raw SSE body, streamed as given
    chunk_size: int | None = None    # split the SSE body into pieces of this size
    events: bool = False             # split the SSE body at event boundaries, one piece per event
    delay: float = 0.0               # pause before each piece
    hang: float = 0.0                # pause before the headers
    headers: dict[str, str] = field(default_factory=dict)
    reset_after: int | None = None   # drop the connection after this many pieces
    stall_after: int | None = None   # go silent (forever) after this many pieces
    pause_after: int | None = None   # go silent for `pause` seconds after this many pieces, then go on
    pause: float = 0.0
    flood: int = 0                   # after the pieces, this many more bytes of `flood_with` repeated, 1 MiB a write
    flood_with: bytes = b"a"


def openai_text(text: str = "Hello from upstream", model: str = "up-model", usage: bool = True) -> dict[str, Any]:
    body = {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "logprobs": None}]}
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return body


def openai_sse(pieces: list[str], model: str = "up-model", usage: bool = True, finish: str = "stop",
               field_name: str = "content") -> bytes:
    head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**head, "choices": [{"index": 0, "delta": {field_name: p}, "finish_reason": None}]} for p in pieces]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        events.append({**head, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(pieces),
                                                         "total_tokens": 11 + len(pieces)}})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def embeddings_answer(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's list: a short vector per input (its index in each), as floats or as base64 float32."""
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    data = []
    for i, _ in enumerate(inputs or ()):
        vector = [0.5, -0.5, float(i)]
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack("<3f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": 5 * len(data), "total_tokens": 5 * len(data)}}


def fixture_sse(name: str) -> bytes:
    return (FIXTURES / "upstream" / name).read_bytes()


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._queue: list[Behaviour] = []
        self.default: Behaviour | None = None
        self.url = ""
        self.cancelled = 0            # streams whose client (the gateway) went away
        self.peers: list[tuple] = []  # the gateway's address per request: a reused connection repeats it
        self.active = 0
        self.greedy = False           # default answers bill every output token the request allowed
        self.cache: Cache | None = None   # default answers report these prompt-cache reads and writes

    def queue(self, *behaviours: Behaviour) -> None:
        self._queue.extend(behaviours)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/messages", self._handle)
        app.router.add_post("/v1/messages/count_tokens", self._handle)
        app.router.add_post("/v1/embeddings", self._handle)
        app.router.add_post("/v1/responses", self._handle)
        return app

    def _default(self, body: dict[str, Any], path: str) -> Behaviour:
        if path.endswith("/count_tokens"):
            return Behaviour(json={"input_tokens": COUNTED})
        if path.endswith("/embeddings"):
            return Behaviour(json=embeddings_answer(body))
        if self.default is not None:
            return self.default
        if path.endswith("/responses"):
            whole, sse = responses_answer(body, self.greedy, self.cache, fixture_sse(RESPONSES_RECORDED))
            return Behaviour(json=whole, sse=sse)
        if self.cache is not None:
            return cached_answer(body, path.endswith("/messages"), self.cache)
        if self.greedy:
            return greedy_answer(body, path.endswith("/messages"))
        if path.endswith("/messages"):
            if body.get("stream"):
                return Behaviour(sse=fixture_sse("anthropic/text-ping.sse"))
            return Behaviour(json={"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                                   "content": [{"type": "text", "text": "Hello from Claude"}],
                                   "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 4}})
        if body.get("stream"):
            return Behaviour(sse=openai_sse(["Hello", " from", " upstream"], model=body.get("model", "")))
        return Behaviour(json=openai_text(model=body.get("model", "")))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        b = self._queue.pop(0) if self._queue else self._default(body, request.path)
        self.active += 1
        try:
            return await self._answer(request, b)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1      # the gateway went away (before or during the answer)
            raise
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        if b.hang:
            await asyncio.sleep(b.hang)
        if b.sse is None:
            return web.json_response(b.json if b.json is not None else {"error": {"message": "scripted failure"}},
                                     status=b.status, headers=b.headers)
        response = web.StreamResponse(status=b.status, headers={"content-type": "text/event-stream", **b.headers})
        await response.prepare(request)
        for n, piece in enumerate(_pieces(b)):
            if b.reset_after is not None and n >= b.reset_after:
                request.transport.close()
                return response
            if b.stall_after is not None and n >= b.stall_after:
                await asyncio.sleep(3600)
            if b.pause_after is not None and n == b.pause_after:
                await asyncio.sleep(b.pause)
            if b.delay:
                await asyncio.sleep(b.delay)
            await response.write(piece)
        if b.flood:
            await _flood(response, b.flood, b.flood_with)
        await response.write_eof()
        return response


async def _flood(response: web.StreamResponse, size: int, unit: bytes) -> None:
    """`size` bytes of `unit` repeated, without holding more than one 1 MiB piece (built once)."""
    piece = unit * max(1, (1 << 20) // len(unit))
    while size > 0:
        await response.write(piece if size >= len(piece) else piece[:size])
        size -= len(piece)


def _pieces(b: Behaviour) -> list[bytes]:
    if b.events:
        return [event + b"\n\n" for event in b.sse.split(b"\n\n") if event]
    size = b.chunk_size or len(b.sse) or 1
    return [b.sse[i:i + size] for i in range(0, len(b.sse), size)]


def greedy_answer(body: dict[str, Any], anthropic: bool) -> Behaviour:
    """The worst an upstream may bill: every output token the request allowed (its max_tokens fields)."""
    caps = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if isinstance(v, int)]
    out = max(caps) if caps else 100_000
    if anthropic:
        usage = {"input_tokens": 10, "output_tokens": out}
        if not body.get("stream"):
            return Behaviour(json={"id": "msg_g", "type": "message", "role": "assistant", "model": body.get("model"),
                                   "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens",
                                   "usage": usage})
        start = {"type": "message_start", "message": {"id": "msg_g", "type": "message", "role": "assistant",
                                                      "content": [], "model": body.get("model"), "stop_reason": None,
                                                      "usage": {"input_tokens": 10, "output_tokens": 1}}}
        events = [("message_start", start),
                  ("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
                  ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": "Hi"}}),
                  ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                  ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                     "usage": {"output_tokens": out}}),
                  ("message_stop", {"type": "message_stop"})]
        return Behaviour(sse=b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events))
    usage = {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out}
    if not body.get("stream"):
        return Behaviour(json={**openai_text(model=body.get("model", ""), usage=False), "usage": usage})
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body.get("model", "")}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                    "finish_reason": "length"}]},
              {**head, "choices": [], "usage": usage}]
    return Behaviour(sse=b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n")


@dataclass
class Cache:
    """Prompt-cache usage an upstream reports: `fresh` prompt tokens read from no cache, `read` from it,
    `write` written to it, and `output` tokens. Anthropic says each; OpenAI says `prompt_tokens` (all three)
    and `cached_tokens` (the reads) and has no cache writes. Any value may be hostile (a negative, a float,
    a string): it is sent as given."""

    fresh: Any = 0
    read: Any = 0
    write: Any = 0
    output: Any = 5
    anthropic_delta_repeats: bool = True   # message_delta repeats the input counts (as Anthropic does today)
    openai_prompt: Any = None              # OpenAI's prompt_tokens when it lies (below its cached_tokens, say)

    def openai_usage(self) -> dict[str, Any]:
        parts = [v for v in (self.fresh, self.read, self.write) if isinstance(v, int)]
        prompt = sum(parts) if self.openai_prompt is None else self.openai_prompt
        return {"prompt_tokens": prompt, "completion_tokens": self.output,
                "total_tokens": sum(parts) + (self.output if isinstance(self.output, int) else 0),
                "prompt_tokens_details": {"cached_tokens": self.read}}

    def anthropic_input(self) -> dict[str, Any]:
        return {"input_tokens": self.fresh, "cache_read_input_tokens": self.read,
                "cache_creation_input_tokens": self.write}


def cached_answer(body: dict[str, Any], anthropic: bool, cache: Cache) -> Behaviour:
    """An answer whose usage reports prompt-cache reads and writes, streamed or not, in either dialect."""
    model = body.get("model", "")
    if not anthropic:
        if not body.get("stream"):
            return Behaviour(json={**openai_text(model=model, usage=False), "usage": cache.openai_usage()})
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model}
        events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                        "finish_reason": "stop"}]},
                  {**head, "choices": [], "usage": cache.openai_usage()}]
        return Behaviour(sse=b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
                         + b"data: [DONE]\n\n")
    if not body.get("stream"):
        return Behaviour(json={"id": "msg_c", "type": "message", "role": "assistant", "model": model,
                               "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
                               "usage": {**cache.anthropic_input(), "output_tokens": cache.output}})
    start = {"type": "message_start", "message": {"id": "msg_c", "type": "message", "role": "assistant",
                                                  "content": [], "model": model, "stop_reason": None,
                                                  "usage": {**cache.anthropic_input(), "output_tokens": 1}}}
    final = {**cache.anthropic_input(), "output_tokens": cache.output} if cache.anthropic_delta_repeats \
        else {"output_tokens": cache.output}
    events = [("message_start", start),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "Hi"}}),
              ("content_block_stop", {"type": "content_block_stop", "index": 0}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": final}),
              ("message_stop", {"type": "message_stop"})]
    return Behaviour(sse=b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events))
