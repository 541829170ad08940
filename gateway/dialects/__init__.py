"""The registry of dialects: adding a provider means adding a module here."""
from __future__ import annotations

from types import ModuleType

from gateway.dialects import mock, openai

DIALECTS: dict[str, ModuleType] = {m.name: m for m in (openai, mock)}

try:  # the Anthropic dialect is optional until its module lands
    from gateway.dialects import anthropic
    DIALECTS[anthropic.name] = anthropic
except ImportError:  # pragma: no cover
    pass


def get(name: str) -> ModuleType:
    return DIALECTS[name]
