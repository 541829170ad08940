"""`.env`: settings kept beside routes.yaml, read by every command run in that folder.

One `NAME=value` a line (`export NAME=value` too, quotes optional, `#` comments). A variable
already set in the environment wins over the file, as with docker compose and python-dotenv.
`gateway init` writes the file (mode 0600) with a generated GATEWAY_MASTER_KEY.
"""
from __future__ import annotations

import os
import re

from gateway.cli.common import Fail

ENV_FILE = ".env"
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read(path: str = ENV_FILE) -> dict[str, str]:
    """The file's variables; {} when there is no file."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"{path}: cannot read ({getattr(exc, 'strerror', None) or 'not UTF-8 text'})") from None
    found: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise Fail(f"{path}, line {number}: expected NAME=value")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        found[match.group(1)] = value
    return found


def apply(path: str = ENV_FILE) -> dict[str, str]:
    """Set the file's variables that the environment does not set already; returns those set."""
    applied = {name: value for name, value in read(path).items() if name not in os.environ}
    os.environ.update(applied)
    return applied


def init(path: str = ENV_FILE) -> int:
    """`gateway init`: a master key for the admin API and dashboard, kept in `.env` (0600)."""
    if os.environ.get("GATEWAY_MASTER_KEY"):
        where = path if "GATEWAY_MASTER_KEY" in read(path) else "the environment"
        print(f"GATEWAY_MASTER_KEY is already set (in {where}); nothing to do. The admin API and dashboard "
              "are on when `gateway serve` runs with it.")
        return 0
    import secrets  # here: every command reads .env, only `init` makes a key

    master = "gwm-" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            if f.tell() > 0 and not _ends_with_newline(path):
                f.write("\n")
            f.write(f"GATEWAY_MASTER_KEY={master}\n")
    except OSError as exc:
        raise Fail(f"{path}: cannot write ({exc.strerror})") from None
    print(f"wrote GATEWAY_MASTER_KEY to {path} (owner-only); every gateway command run in this folder reads it.\n"
          f"{master}\n"
          f"Sign in to the dashboard (/dashboard) and call the admin API (/admin) with it.")
    return 0


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
