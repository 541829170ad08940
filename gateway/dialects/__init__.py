"""The registry of dialects: adding a provider means adding a module here."""
from __future__ import annotations

from gateway.dialects import anthropic, mock, openai, openai_responses
from gateway.dialects.base import Dialect

_MODULES: tuple[Dialect, ...] = (openai, anthropic, mock, openai_responses)
DIALECTS: dict[str, Dialect] = {m.name: m for m in _MODULES}


def get(name: str) -> Dialect:
    return DIALECTS[name]
