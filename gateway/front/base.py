"""What every front hands the core: the neutral request, checked."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
