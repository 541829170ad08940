"""A fast fake OpenAI upstream for the benchmark: canned answers, built once, sent as bytes.

It must cost as little as possible, so the gateway's share of the machine is what the
bench measures. Answers depend only on the model name and the stream flags:

- any model: a `chat.completion`, or (with `"stream": true`) CHUNKS content chunks, a
  finish chunk, a usage chunk when `stream_options.include_usage` is true, and `[DONE]`,
  written in one piece (set FLUSH_EACH=1 for one write per event);
- a model ending in `-ttfc`: the first chunk, a pause of TTFC_PAUSE_MS, then the rest, so a
  client can time the first chunk apart from the whole answer;
- a model ending in `-hold`: the first chunk, then one chunk a second for HOLD_SECS seconds,
  so many streams stay open at once.

Env: PORT (18180), CHUNKS (20), TTFC_PAUSE_MS (5), HOLD_SECS (5), FLUSH_EACH (0).
"""
from __future__ import annotations

import asyncio
import os

import orjson
from aiohttp import web

CONTENT = "Hello from the mock upstream."
WORDS = ("Hello", " from", " the", " mock", " up", "stream", ".")
PROMPT_TOKENS = 12
CREATED = 1_700_000_000
JSON = {"Content-Type": "application/json"}
SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def completion(model: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": CONTENT, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 7, "total_tokens": PROMPT_TOKENS + 7},
    })


def _event(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def stream_events(model: str, chunks: int, include_usage: bool) -> list[bytes]:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model}
    events = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": WORDS[0]} if i == 0 else {"content": WORDS[i % len(WORDS)]}
        events.append(_event({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
    events.append(_event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if include_usage:
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks, "total_tokens": PROMPT_TOKENS + chunks}
        events.append(_event({**head, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


class Upstream:
    def __init__(self, chunks: int, ttfc_pause: float, hold_secs: float, flush_each: bool):
        self.chunks, self.ttfc_pause, self.hold_secs, self.flush_each = chunks, ttfc_pause, hold_secs, flush_each
        self.cache: dict[tuple, object] = {}

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, body=b'{"error":{"message":"bad json"}}', headers=JSON)
        model = str(body.get("model") or "gpt-mock")
        if body.get("stream") is not True:
            answer = self.cache.get(model)
            if answer is None:
                answer = self.cache[model] = completion(model)
            return web.Response(body=answer, headers=JSON)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        key = (model, include_usage)
        events = self.cache.get(key)
        if events is None:
            events = self.cache[key] = stream_events(model, self.chunks, include_usage)
        response = web.StreamResponse(headers=SSE)
        try:
            await response.prepare(request)
            await self._send(response, model, events)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass   # the client went away (wrk stops mid-answer at the end of a run)
        return response

    async def _send(self, response: web.StreamResponse, model: str, events: list[bytes]) -> None:
        if model.endswith("-ttfc"):
            await response.write(events[0])
            await asyncio.sleep(self.ttfc_pause)
            await response.write(b"".join(events[1:]))
        elif model.endswith("-hold"):
            await response.write(events[0])
            for i in range(int(self.hold_secs)):
                await asyncio.sleep(1.0)
                await response.write(events[1 + i % (len(events) - 3)])
            await response.write(b"".join(events[-3:]))
        elif self.flush_each:
            for event in events:
                await response.write(event)
        else:
            await response.write(b"".join(events))


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


EMBEDDING = [0.001 * i for i in range(1536)]


async def embeddings(request: web.Request) -> web.Response:
    """One 1536-dimension vector per input, as OpenAI answers (floats)."""
    body = await request.json()
    count = 1 if isinstance(body.get("input"), str) else len(body.get("input") or ())
    data = [{"object": "embedding", "index": i, "embedding": EMBEDDING} for i in range(count)]
    return web.Response(body=orjson.dumps({"object": "list", "data": data, "model": body.get("model"),
                                           "usage": {"prompt_tokens": 2, "total_tokens": 2}}), headers=JSON)


def make_app(upstream: Upstream) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    env = os.environ.get
    upstream = Upstream(int(env("CHUNKS", "20")), float(env("TTFC_PAUSE_MS", "5")) / 1000,
                        float(env("HOLD_SECS", "5")), env("FLUSH_EACH", "0") == "1")
    web.run_app(make_app(upstream), host="127.0.0.1", port=int(env("PORT", "18180")), access_log=None, print=None,
                backlog=4096)


if __name__ == "__main__":
    main()
