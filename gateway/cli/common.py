"""What every command shares: the one-line user error, the routes file, the database it names, and
numbers written the way people read them.

The routes file's schema (gateway/config.py: pydantic models, built as it is imported) is imported only
when a routes file is read: `keys list` and `spend` with `--db` never read one, and its import was
most of their start-up."""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Config, Limits

DEFAULT_DB = "gateway.db"
_UNSET_PROVIDER_VAR = re.compile(r"^providers\.[^:]+: environment variable (\w+) is not set$")


class Fail(Exception):
    """A user error: printed as one line, exit 1."""


def _problems(problems: list[str]) -> str:
    """One line a problem; a path whose ${VAR} is unset says only that (not also what "" fails)."""
    unset = {p.split(": ", 1)[0] for p in problems if p.endswith(" is not set")}
    return "\n".join(p for p in problems if p.endswith(" is not set") or p.split(": ", 1)[0] not in unset)


def load(path: str) -> Config:
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        raise Fail(_problems(err.problems)) from None


def load_for_database(path: str) -> Config:
    """The routes file for a command that touches only the database (keys, spend): a provider's
    `${VAR}` (its api_key, a header) need not be set, as no upstream is called. Any other problem,
    `settings.db: ${VAR}` included, is still an error."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        found = [_UNSET_PROVIDER_VAR.match(p) for p in err.problems]
        if not all(found):      # say what stops this command, not the secrets it does not need
            raise Fail(_problems([p for p, m in zip(err.problems, found, strict=True) if not m])) from None
        placeholders = {m.group(1): "unset" for m in found if m}
    return _load_with(path, placeholders)


def _load_with(path: str, placeholders: dict[str, str]) -> Config:
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path, {**os.environ, **placeholders})
    except ConfigError as err:
        raise Fail(_problems(err.problems)) from None


def config_if_any(args: argparse.Namespace) -> Config | None:
    """The routes file when there is one (key and spend commands also work without)."""
    if not os.path.exists(args.config):
        return None
    cached: Config | None = getattr(args, "_config", None)
    if cached is None:
        cached = load_for_database(args.config)
        args._config = cached
    return cached


def database(args: argparse.Namespace, config: Config | None = None) -> str:
    """--db / GATEWAY_DB win over settings.db of the routes file; gateway.db when neither says."""
    if not args.db:
        if config is None:
            config = config_if_any(args)
        args.db = (config.settings.db if config is not None else None) or DEFAULT_DB
    db: str = args.db
    return db


def caps(args: argparse.Namespace) -> Limits:
    """Key caps come from the config when there is one; defaults otherwise."""
    from gateway.config import Limits

    config = config_if_any(args)
    return config.settings.limits if config is not None else Limits()


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def plain(value: float | int) -> str:
    """A number as written by hand: 1000000, 0.5, 0.0000138; never 1e+06, never float noise."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    from decimal import Decimal

    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd(value: float | None) -> str:
    """Dollars: cents from $1 up, six decimals below (a request often costs a fraction of a cent)."""
    value = value or 0.0
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.6f}"


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], money: Sequence[str] = ()) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(r.get(c), c in money) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    right = [all(_numeric(r.get(c)) for r in rows) for c in columns]
    print("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(columns, widths, right, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True)).rstrip())


def _numeric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _cell(value: Any, money: bool) -> str:
    if value is None:
        return ""
    if money:
        return usd(value)
    if isinstance(value, float):
        return plain(value)
    return str(value)
