"""The neutral shapes every dialect translates to and from.

A dialect turns an OpenAI chat request into its upstream request, and turns the
upstream's answer (a whole response, or one SSE event at a time) into these
shapes. It does no I/O, keeps no clock, and knows nothing of aiohttp or SQLite.
The shared stream transformer turns `Delta`s into OpenAI chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_TOKENS = 2 ** 31 - 1   # the ledger's INTEGER: a count above it from an upstream is garbage, not usage


@dataclass(slots=True)
class Usage:
    """Tokens as billed. `prompt_tokens` counts every prompt token, cached or not (SPEC section 11):
    `cached_tokens` of them were read from the provider's cache, `cache_write_tokens` written to it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


def count(value: Any) -> int | None:
    """A token count copied from an upstream: a whole number in [0, MAX_TOKENS], else None (not known)."""
    if value.__class__ is int:
        return value if 0 <= value <= MAX_TOKENS else None
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_TOKENS:
        return int(value)
    return None


def checked_usage(prompt: Any, completion: Any, reasoning: Any = None, cached: Any = None,
                  cache_write: Any = None) -> Usage:
    """Usage from an upstream's numbers, made consistent before it reaches a budget or the ledger: every
    count a whole number in [0, MAX_TOKENS] (else 0, or None for the optional ones), cache reads and writes
    together at most the prompt, reasoning at most the completion."""
    p, c = count(prompt) or 0, count(completion) or 0
    r, hit, put = count(reasoning), count(cached), count(cache_write)
    if hit is not None:
        hit = min(hit, p)
    if put is not None:
        put = min(put, p - (hit or 0))
    return Usage(p, c, None if r is None else min(r, c), hit, put)


@dataclass(slots=True)
class Delta:
    """One step of an answer, in provider-neutral form.

    `tool_calls` holds OpenAI-shaped tool-call fragments, each with an `index`.
    `signature` is an opaque reasoning signature (Anthropic) the client must
    hand back to continue a thinking conversation.
    """

    content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    signature: str | None = None
    logprobs: dict[str, Any] | None = None
    native: dict[str, Any] | None = None   # the upstream event itself, for a front of the same API (pass-through)

    @property
    def text_only(self) -> bool:
        """More text and nothing else: most deltas of a stream, which the client encoders write from fixed bytes."""
        return bool(self.content) and self.reasoning is None and self.refusal is None \
            and not (self.tool_calls or self.finish_reason or self.signature) \
            and self.usage is None and self.logprobs is None and self.native is None


@dataclass(slots=True)
class Completion:
    """A whole non-streamed answer."""

    content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str = "stop"
    usage: Usage | None = None
    signature: str | None = None
    logprobs: dict[str, Any] | None = None
    native: tuple[str, dict[str, Any]] | None = None   # (API, the upstream's answer) for a front of that API


@dataclass(slots=True)
class SSEEvent:
    data: str
    event: str | None = None


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(slots=True)
class TargetView:
    """What a dialect may know of the target it is called for."""

    model: str
    base_url: str | None
    api_key: str | None
    headers: dict[str, str] = field(default_factory=dict)
    thinking: Any = None          # None | "native" | {"model": ...} | {"params": {...}}
    options: dict[str, Any] = field(default_factory=dict)


def largest_count(body: dict[str, Any], *fields: str) -> int | None:
    """The largest of these numeric fields of an upstream body (a bound on output tokens), or None."""
    found = [v for f in fields if isinstance(v := body.get(f), (int, float)) and not isinstance(v, bool)
             and math.isfinite(v)]
    return math.ceil(max(found)) if found else None


class UpstreamError(Exception):
    """An upstream answered with an error the dialect recognised in its body."""

    def __init__(self, message: str, status: int = 502, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


class StreamDecoder(Protocol):
    def feed(self, event: SSEEvent) -> list[Delta]: ...
    def finish(self) -> list[Delta]: ...
    @property
    def done(self) -> bool: ...


class Dialect(Protocol):
    """A dialect module exposes exactly these names."""

    name: str
    needs_base_url: bool     # the routes.yaml provider must say where it is
    native_api: str | None   # the client API this dialect speaks as is (a front's name), or None

    def build_request(self, body: dict[str, Any], target: TargetView, stream: bool) -> UpstreamRequest: ...
    def output_cap(self, sent: dict[str, Any]) -> int | None: ...
    def parse_response(self, data: dict[str, Any]) -> Completion: ...
    def stream_decoder(self, native: bool = False) -> StreamDecoder: ...
    def error_message(self, data: Any) -> str | None: ...


class NativeDialect(Dialect, Protocol):
    """A dialect that takes one client API's body as is (`native_api`), the model name aside."""

    def build_native(self, body: dict[str, Any], target: TargetView, stream: bool,
                     headers: dict[str, str]) -> UpstreamRequest: ...


class EmbeddingDialect(Dialect, Protocol):
    """A dialect whose upstream also embeds (`/v1/embeddings`): the body is OpenAI's, the model name aside."""

    def build_embeddings(self, body: dict[str, Any], target: TargetView) -> UpstreamRequest: ...
    def parse_embeddings(self, data: Any) -> Completion: ...


class LocalDialect(Dialect, Protocol):
    """A dialect answered in-process (`transport = "local"`: the mock), with no HTTP in between."""

    transport: str

    def answer(self, req: UpstreamRequest) -> dict[str, Any]: ...
    def stream_events(self, req: UpstreamRequest) -> list[bytes]: ...
