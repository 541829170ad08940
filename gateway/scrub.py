"""One scrubber for everything that leaves the gateway: client answers, log lines, ledger codes.

Upstreams are hostile: an error may echo our credentials in any field (message,
type, code, param), and a provider key need not look like `sk-...`. So the
scrubber removes the secret *values* the gateway holds (every provider
`api_key` and secret header, the master key), whatever their shape, and also
anything shaped like a key. Codes copied from an upstream are kept only when
they look like codes.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config

REDACTED = "[redacted]"
_SHAPES = re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}|sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9_\-.=+/]{6,}",
                     re.IGNORECASE)
_CODE = re.compile(r"[a-z0-9_.\-]{1,64}")
_PARAM = re.compile(r"[A-Za-z0-9_.\[\]\-]{1,128}")
_MIN_SECRET = 6   # shorter values would redact ordinary words
_SECRET_HEADER = ("auth", "key", "token", "secret")


def secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER)


def shapes(text: str) -> str:
    """Key-shaped strings only: for text whose secrets the caller cannot know (a log line)."""
    return _SHAPES.sub(REDACTED, text)


class Scrubber:
    """Knows the gateway's secrets; `remember` adds more (a reload keeps the old ones too)."""

    __slots__ = ("_secrets", "_values")

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._secrets: set[str] = set()
        self._values: re.Pattern[str] | None = None
        self.remember(secrets)

    def remember(self, secrets: Iterable[str | None]) -> None:
        """Add secret values; each header value counts whole and by its last word (`Bearer X` -> X)."""
        found = set(self._secrets)
        for value in secrets:
            if not value:
                continue
            for piece in (value, value.split()[-1] if value.split() else ""):
                if len(piece) >= _MIN_SECRET:
                    found.add(piece)
        if found != self._secrets:
            self._secrets = found
            ordered = sorted(found, key=len, reverse=True)   # the longest first: no half-redacted secret
            self._values = re.compile("|".join(map(re.escape, ordered)))

    def values(self, text: str) -> str:
        """Only the held secret values: safe on the gateway's own messages (their hints look like keys)."""
        return self._values.sub(REDACTED, text) if self._values is not None and text else text

    def text(self, text: str) -> str:
        """Held secrets and key shapes: for any text that came from an upstream."""
        return shapes(self.values(text)) if text else text

    def code(self, value: object, default: str | None = None) -> str | None:
        """`value` if it is a short code (`[a-z0-9_.-]{1,64}`) holding no secret, else `default`."""
        if isinstance(value, str) and _CODE.fullmatch(value) and self.text(value) == value:
            return value
        return default

    def param(self, value: object) -> str | None:
        """A parameter path (`messages[0].content`) holding no secret, else None."""
        if isinstance(value, str) and _PARAM.fullmatch(value) and self.text(value) == value:
            return value
        return None


def config_secrets(config: Config) -> list[str]:
    """Every secret a config holds: provider api keys and secret-looking extra headers."""
    out: list[str | None] = []
    for provider in config.providers.values():
        out.append(provider.api_key)
        out.extend(v for k, v in provider.headers.items() if secret_header(k))
    return [s for s in out if s]
