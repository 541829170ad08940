"""Package attributes imported on first use (PEP 562): a command that needs a package's light half
(`gateway keys list` reads keys and roll-ups) does not pay to import its heavy half."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy(package: str, where: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name of `where` comes from the module it names, once."""
    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value
    return __getattr__
