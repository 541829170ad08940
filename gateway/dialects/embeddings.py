"""Embeddings as OpenAI's `/embeddings` speaks them (OpenAI-dialect upstreams, and the mock's answers).

Reading an answer checks every vector (numbers, or a base64 string when that
was asked) before a client sees it: an upstream's list is hostile like the rest.
"""
from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any

import orjson

from gateway.dialects.base import Completion, TargetView, UpstreamError, UpstreamRequest, checked_usage
from gateway.tokens import count_words

DEFAULT_DIMENSIONS = 1536
_NUMBER_BYTES = b"0123456789.-+eE,"


def build_request(body: dict[str, Any], target: TargetView) -> UpstreamRequest:
    payload = dict(body)
    payload["model"] = target.model
    headers = {"content-type": "application/json"}
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    headers.update(target.headers)
    return UpstreamRequest(f"{(target.base_url or '').rstrip('/')}/embeddings", headers, payload)


def parse(data: Any) -> Completion:
    """The checked vectors, each already as the JSON bytes the client gets (`Completion.native`'s
    `items`: index and bytes), and the upstream's usage."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UpstreamError("upstream answered embeddings without a list of them")
    out = []
    for i, item in enumerate(items):
        vector = item.get("embedding") if isinstance(item, dict) else None
        written = _vector(vector)
        if written is None:
            raise UpstreamError("upstream sent an embedding that is not a vector")
        index = item.get("index")
        out.append((index if index.__class__ is int else i, written))
    usage = data.get("usage")
    return Completion(native=("embeddings", {"items": out}),
                      usage=checked_usage(usage.get("prompt_tokens"), 0) if isinstance(usage, dict) else None)


def _vector(value: Any) -> bytes | None:
    """`value` as JSON if it is a non-empty list of numbers, or a (base64) string; else None. Checked on the
    written bytes, in C: a list of numbers writes only digits, signs, points, exponents and commas."""
    if isinstance(value, str):
        return orjson.dumps(value)
    if not isinstance(value, list) or not value:
        return None
    written = orjson.dumps(value)
    return None if written[1:-1].translate(None, _NUMBER_BYTES) else written


# ---------------------------------------------------------------- the mock's

def mock_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic unit vector per input (the same text, the same vector), `dimensions` long."""
    raw = body["input"]
    inputs = [raw] if isinstance(raw, str) or (raw and all(isinstance(t, int) for t in raw)) else raw
    size = body.get("dimensions") or DEFAULT_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data, tokens = [], 0
    for i, item in enumerate(inputs):
        tokens += count_words(item) if isinstance(item, str) else len(item)
        vector = _unit(repr(item).encode(), size)
        embedding: Any = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _unit(seed: bytes, size: int) -> list[float]:
    rng = random.Random(hashlib.sha256(seed).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
