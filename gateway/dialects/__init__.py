"""The registry of dialects: adding a provider means adding a module here."""
from __future__ import annotations

from types import ModuleType

from gateway.dialects import anthropic, mock, openai

DIALECTS: dict[str, ModuleType] = {m.name: m for m in (openai, anthropic, mock)}


def get(name: str) -> ModuleType:
    return DIALECTS[name]
