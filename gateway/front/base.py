"""What every front hands the core: the neutral request, checked; and what a front module is."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gateway.dialects.base import Completion, Delta, Usage
from gateway.errors import GatewayError
from gateway.scrub import Scrubber
from gateway.tokens import count_text


@dataclass(slots=True)
class ClientRequest:
    """A client's request in neutral form.

    `body` is chat-completions-shaped (messages, tools, max_tokens, thinking, ...):
    the one request form every dialect builds from. `native` is the client's own
    body, for a target whose dialect speaks the client's API (`api`) as is.
    """

    body: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    thinking: bool = False
    dropped: list[str] = field(default_factory=list)   # parameters removed by `unsupported_params: drop`
    api: str = "chat"
    native: dict[str, Any] | None = None
    forward: dict[str, str] = field(default_factory=dict)   # client headers a native target may read
    unseen: int = 0   # estimated prompt tokens that only `native` carries (a document, say): reservations count them
    recall: str | None = None   # a stored answer this request continues (Responses' previous_response_id)
    answerer: Answerer | None = None   # answers for this request, when they repeat what it asked; else the front
    keep: bool = False          # the answer is stored, to be continued or read back (Responses' `store`)


class StreamEncoder(Protocol):
    """A client API's side of a stream: neutral deltas to the bytes its clients read, and the usage to book."""

    keepalive: bytes   # what goes out while the upstream is silent

    def push(self, delta: Delta) -> bytes: ...
    def finish(self) -> bytes: ...
    def fail(self, error: GatewayError, scrubber: Scrubber) -> bytes: ...
    def final_usage(self) -> Usage: ...
    @property
    def usage_estimated(self) -> bool: ...


class Answerer(Protocol):
    """What encodes answers: a front module, or an object a front binds to one request (`ClientRequest.answerer`)."""

    def answer(self, done: Completion, request_id: str, created: int, route: str,
               prompt: int) -> tuple[bytes, Usage, bool]: ...
    def stream_encoder(self, request_id: str, created: int, route: str, include_usage: bool,
                       prompt: int) -> StreamEncoder: ...


class Front(Protocol):
    """A front module exposes exactly these names."""

    name: str          # also the `native_api` of a dialect that speaks it as is
    path: str
    endpoint: str      # the ledger's `requests.endpoint`
    envelope: str      # the error envelope its clients read (errors.ENVELOPES)

    def model_name(self, body: dict[str, Any]) -> str: ...
    def decode(self, body: dict[str, Any], drop_unsupported: bool, headers: Mapping[str, str]) -> ClientRequest: ...
    def answer(self, done: Completion, request_id: str, created: int, route: str,
               prompt: int) -> tuple[bytes, Usage, bool]: ...
    def stream_encoder(self, request_id: str, created: int, route: str, include_usage: bool,
                       prompt: int) -> StreamEncoder: ...


class ContinuingFront(Front, Protocol):
    """A front whose answers are stored and continued (`ClientRequest.recall` / `keep`)."""

    def resume(self, asked: ClientRequest, items: list[dict[str, Any]], output: list[dict[str, Any]]) -> ClientRequest:
        """`asked` continuing a stored conversation: its input `items`, then the stored answer's `output`."""
        ...
    def conversation(self, asked: ClientRequest) -> list[dict[str, Any]]:
        """What is stored with the answer to `asked`: the whole conversation it answered."""
        ...
    def stored_answer(self, encoder: StreamEncoder) -> bytes | None:
        """A finished stream's answer, as a non-stream answer would have been (None: it did not finish)."""
        ...


_THINKING = ("thinking", "reasoning_effort")      # how the neutral body asks for it
_THINKING_NATIVE = ("thinking", "reasoning")      # how Anthropic's and the Responses API's bodies do


def without_thinking(asked: ClientRequest) -> ClientRequest:
    """`asked` with its thinking dropped (and said so): for a front whose clients think by default
    (Claude Code, Codex), on a route whose targets cannot."""
    native = None if asked.native is None else {k: v for k, v in asked.native.items() if k not in _THINKING_NATIVE}
    body = {k: v for k, v in asked.body.items() if k not in _THINKING}
    return replace(asked, body=body, native=native, thinking=False, dropped=[*asked.dropped, "thinking"])


def estimate_usage(prompt: int, written: str, reasoning: str | None) -> Usage:
    """The usage to book when an upstream reports none: the prompt estimate, and what was written
    (reasoning billed as output, as every provider bills it)."""
    reasoning_tokens = count_text(reasoning) if reasoning else None
    return Usage(prompt, count_text(written) + (reasoning_tokens or 0), reasoning_tokens)
