"""What every front hands the core: the neutral request, checked; and what a front module is."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.dialects.base import Completion, Delta, Usage


@dataclass(slots=True)
class ClientRequest:
    """A client's request in neutral form.

    `body` is chat-completions-shaped (messages, tools, max_tokens, thinking, ...):
    the one request form every dialect builds from.
    """

    body: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    thinking: bool = False
    dropped: list[str] = field(default_factory=list)   # parameters removed by `unsupported_params: drop`


class StreamEncoder(Protocol):
    """A client API's side of a stream: neutral deltas to the bytes its clients read, and the usage to book."""

    def push(self, delta: Delta) -> bytes: ...
    def finish(self) -> bytes: ...
    def final_usage(self) -> Usage: ...
    @property
    def usage_estimated(self) -> bool: ...


class Front(Protocol):
    """A front module exposes exactly these names."""

    name: str
    path: str

    def model_name(self, body: dict[str, Any]) -> str: ...
    def decode(self, body: dict[str, Any], drop_unsupported: bool) -> ClientRequest: ...
    def answer(self, done: Completion, request_id: str, created: int, route: str,
               prompt: int) -> tuple[bytes, Usage, bool]: ...
    def stream_encoder(self, request_id: str, created: int, route: str, include_usage: bool,
                       prompt: int) -> StreamEncoder: ...
