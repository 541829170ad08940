"""What both stores share: the `Store` interface, its two errors, and the SQL and row shapes.

The drivers (sqlite.py, postgres.py) import this module and nothing imports them but
`open_store` (gateway/store/__init__.py), which picks one by URL.
"""
from __future__ import annotations

import abc
import contextlib
import functools
import json
import math
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import ServiceUnavailable

LEDGER_COLUMNS = ("request_id", "key_id", "created_at", "route", "provider", "upstream_model", "stream", "status",
                  "http_status", "error_code", "prompt_tokens", "completion_tokens", "reasoning_tokens",
                  "total_tokens", "cost_usd", "latency_ms", "ttft_ms", "attempts", "usage_source", "endpoint",
                  "cached_tokens", "cache_write_tokens")
KEY_COLUMNS = ("id", "name", "key_prefix", "key_hash", "rpm_limit", "tpm_limit", "max_budget", "budget_period",
               "models", "created_at", "revoked_at", "updated_at")
KEY_UPDATABLE = frozenset({"name", "rpm_limit", "tpm_limit", "max_budget", "budget_period", "models", "revoked_at"})
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# What the spend views count (migrations/0004_spend_counts_admitted.sql; the roll-ups of rollup.py keep the
# same rules): admitted requests, their tokens and cost, and beside them the refusals for a key's limits,
# budget or model list, and the upstream errors. Other rejected rows (client mistakes) are not spend.
REFUSAL_CODES = ("rate_limit_exceeded", "request_exceeds_limit", "budget_exceeded", "model_not_allowed")

TEXT_BOUND = 256           # any text column of a ledger row
CODE_BOUND = 64            # error_code: a short code, SPEC section 9
_INT_MIN, _INT_MAX = -2**31, 2**31 - 1      # INTEGER in PostgreSQL; SQLite holds it too
# A float column (a cost, a latency) within +-FLOAT_BOUND: the day roll-ups add up costs (rollup.py), and
# a sum must stay finite over any number of rows a database can hold (2**63 x 1e15 is about 1e34), or
# PostgreSQL refuses the batch for the rows before it (22003) while SQLite sums to infinity. A quadrillion
# USD for one request, or 30,000 years of latency, is no real value.
FLOAT_BOUND = 1e15
_CODE = re.compile(r"[a-z0-9_.\-]{1,64}")
_NOT_CODE = re.compile(r"[^a-z0-9_.\-]+")
_FLOAT_COLUMNS = frozenset({"cost_usd", "latency_ms", "ttft_ms"})
_TEXT_COLUMNS = frozenset({"request_id", "key_id", "created_at", "route", "provider", "upstream_model", "status",
                           "error_code", "usage_source", "endpoint"})
_NOT_NULL: dict[str, Any] = {"stream": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                             "attempts": 0, "cost_usd": 0.0, "endpoint": "chat.completions", "cached_tokens": 0,
                             "cache_write_tokens": 0}
_CHOICES = {"status": ("ok", "error", "cancelled", "rejected"), "usage_source": ("upstream", "estimated")}
_KINDS = tuple((c, str if c in _TEXT_COLUMNS else float if c in _FLOAT_COLUMNS else int) for c in LEDGER_COLUMNS)


RESPONSE_COLUMNS = ("id", "key_id", "created_at", "input", "response")


def response_values(row: dict[str, Any], strict: bool = False) -> tuple[str, ...]:
    """A stored response as both stores write it, in RESPONSE_COLUMNS order. Its texts are JSON made by
    orjson (no NUL, no lone surrogate); `strict`, the last try for a row a database refused: ASCII only."""
    values = tuple(str(row[c]) for c in RESPONSE_COLUMNS)
    if not strict:
        return values
    texts = tuple(v.replace("\x00", "").encode("ascii", "replace").decode() for v in values[:3])
    try:   # the JSON again, every character outside ASCII escaped
        return (*texts, *(json.dumps(json.loads(v), ensure_ascii=True) for v in values[3:]))
    except ValueError:
        return (*texts, "[]", "{}")


class RowRefused(Exception):
    """The database refused a value or a constraint of a ledger batch: the same rows would be refused again.

    Unlike `DatabaseUnavailable` (keep the rows, retry later), the ledger writer splits such a batch
    down to the row at fault and sets that row aside, so it never blocks the rows behind it.
    """


def ledger_values(row: dict[str, Any], strict: bool = False) -> list[Any]:
    """A ledger row as both stores write it, in LEDGER_COLUMNS order, repaired so that neither refuses it.

    Text loses NUL characters and lone surrogates and is clipped to TEXT_BOUND characters (`error_code`
    to a CODE_BOUND code); whole numbers fit PostgreSQL's INTEGER; floats are finite, within FLOAT_BOUND
    (so the day roll-ups' sums are too); NOT NULL numbers
    default to 0. One function for both stores, so SQLite and PostgreSQL hold the same row. `strict` is
    the last try for a row the database still refused: ASCII text, and a valid `status`/`usage_source`.
    """
    out = []
    for column, kind in _KINDS:
        v = row.get(column)
        if v is None:
            v = _NOT_NULL.get(column)
        elif kind is str:
            if v.__class__ is not str or len(v) > TEXT_BOUND or "\x00" in v or not v.isascii() or strict:
                v = _text(v, strict)
            if column == "error_code" and not _CODE.fullmatch(v):
                v = _NOT_CODE.sub("_", v.lower()).strip("_")[:CODE_BOUND] or None
        elif kind is int:
            if v.__class__ is not int or not _INT_MIN <= v <= _INT_MAX:
                v = _whole(v, _NOT_NULL.get(column))
        elif v.__class__ is not float or not -FLOAT_BOUND <= v <= FLOAT_BOUND:    # also NaN and infinities
            v = _finite(v, _NOT_NULL.get(column))
        if strict and column in _CHOICES and v not in _CHOICES[column]:
            v = "error" if column == "status" else None
        out.append(v)
    return out


def _text(value: Any, strict: bool) -> str:
    text = value if isinstance(value, str) else str(value)
    text = text[:TEXT_BOUND].replace("\x00", "")
    if strict:
        return text.encode("ascii", "replace").decode()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:          # a lone surrogate: neither orjson nor PostgreSQL takes it
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _whole(value: Any, default: int | None) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return min(max(number, _INT_MIN), _INT_MAX)


def _finite(value: Any, default: float | None) -> float | None:
    """A float within +-FLOAT_BOUND (clamped), or `default` for what is no number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return min(max(number, -FLOAT_BOUND), FLOAT_BOUND) if math.isfinite(number) else default


def utc_iso(ts: float) -> str:
    """ISO-8601 UTC with milliseconds; sorts as text in time order.

    Every request writes one, so the second's text is made once per second (`_second_text`), not by a
    datetime and strftime each time (9 us). The microseconds are rounded as datetime.fromtimestamp
    rounds them (half to even), then cut to milliseconds: the same text as
    `datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"`.
    """
    frac, whole = math.modf(ts)
    micros = round(frac * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_second_text(int(whole))}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_utc_iso(text: str) -> float:
    """A `created_at` (utc_iso's text) back to a POSIX time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_postgres_url(url: str) -> bool:
    return url.startswith(_POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The database as it may be shown: a PostgreSQL URL's password becomes `***`."""
    if not is_postgres_url(url):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


class DatabaseUnavailable(ServiceUnavailable):
    """The database refused or did not answer (server down, connection lost, locked too long, disk full,
    an I/O error, a file that cannot be opened or is no database), in either store.

    The ledger writer keeps its rows and retries; the admin API answers 503; the CLI prints one line.
    `message` replaces the default one (the SQLite store names the file it could not open).
    """

    def __init__(self, reason: str, message: str | None = None):
        self.reason = reason
        super().__init__(message or f"The database does not answer ({reason}).", code="database_unavailable")


@dataclass
class KeyRow:
    id: str
    name: str
    key_prefix: str
    key_hash: str
    rpm_limit: int
    tpm_limit: int
    max_budget: float
    budget_period: str
    models: list[str] | None
    created_at: str
    revoked_at: str | None
    updated_at: str

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> KeyRow:
        values = dict(zip(KEY_COLUMNS, row, strict=True))
        values["models"] = json.loads(values["models"]) if values["models"] else None
        return cls(**values)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "key_prefix": self.key_prefix, "rpm_limit": self.rpm_limit,
                "tpm_limit": self.tpm_limit, "max_budget": self.max_budget, "budget_period": self.budget_period,
                "models": self.models, "created_at": self.created_at, "revoked_at": self.revoked_at}


def key_values(*, key_id: str, name: str, key_prefix: str, key_hash: str, rpm: int, tpm: int, budget: float,
               period: str, models: list[str] | None, now: str) -> tuple[Any, ...]:
    """A new key's row, in KEY_COLUMNS order, as both stores insert it."""
    return (key_id, name, key_prefix, key_hash, rpm, tpm, budget, period,
            json.dumps(models) if models is not None else None, now, None, now)


def key_changes(changes: dict[str, Any], now: str) -> dict[str, Any]:
    """The columns an update may set, `models` as JSON text, `updated_at` stamped."""
    fields = {k: (json.dumps(v) if k == "models" and v is not None else v)
              for k, v in changes.items() if k in KEY_UPDATABLE}
    fields["updated_at"] = now
    return fields


class Store(abc.ABC):
    """What the gateway, the CLI and the key registry need from a database."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool: ...

    def session(self) -> contextlib.AbstractAsyncContextManager[None]:
        """`async with store.session():` the calls inside run one after another on one connection, for a
        command that reads a few times and exits (`keys list`): PostgreSQL's store then takes its pooled
        connection and resets its session once, not around every call. Nothing here, nor in SQLite's."""
        return contextlib.nullcontext()

    # -- keys --------------------------------------------------------------
    @abc.abstractmethod
    async def create_key(self, *, key_id: str, name: str, key_prefix: str, key_hash: str, rpm: int, tpm: int,
                         budget: float, period: str, models: list[str] | None, now: str) -> KeyRow: ...

    @abc.abstractmethod
    async def get_key(self, key_id: str) -> KeyRow | None: ...

    @abc.abstractmethod
    async def list_keys(self) -> list[KeyRow]: ...

    @abc.abstractmethod
    async def update_key(self, key_id: str, changes: dict[str, Any], now: str) -> KeyRow | None: ...

    @abc.abstractmethod
    async def keys_version(self) -> Hashable:
        """A token that changes when another connection (a process, the CLI, a hand-typed UPDATE) changes keys."""

    # -- ledger ------------------------------------------------------------
    @abc.abstractmethod
    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        """One transaction per batch: a batch is written whole or not at all.

        Each row goes through `ledger_values(row, strict)`; a value or a constraint the database still
        refuses raises `RowRefused`; a database that does not answer, `DatabaseUnavailable`.
        """

    async def drain(self, rows: list[dict[str, Any]], batch: int, settled: Callable[[int], None],
                    linger: Callable[[], bool] = lambda: False, interval: float = 0.05) -> None:
        """Write the ledger's buffer until it is empty: `rows` grows at its tail while this runs; each
        batch leaves its head once committed, reported to `settled`. A refused batch raises with its
        rows still at the head. Here one `insert_rows` per batch on the event loop; a store may stay
        on while `linger()`, writing what arrives every `interval` where the loop does not hold it up."""
        while rows:
            head = rows[:batch]
            await self.insert_rows(head)
            del rows[: len(head)]
            settled(len(head))

    @abc.abstractmethod
    async def recent_admissions(self, since: str) -> list[tuple[str, str, int]]:
        """(key_id, created_at, total_tokens) of admitted requests since `since`, for the windows."""

    @abc.abstractmethod
    async def spend_since(self, since: str) -> dict[str, float]: ...

    async def spend_total(self) -> dict[str, float]:
        return await self.spend_since("")

    @abc.abstractmethod
    async def spend(self, by: str, since: str | None = None) -> list[dict[str, Any]]: ...

    # -- stored responses (SPEC section 10.2) -------------------------------
    @abc.abstractmethod
    async def insert_responses(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        """One transaction per batch of `responses` rows (RESPONSE_COLUMNS), as `insert_rows` for the ledger:
        `RowRefused` for what the database refuses, `DatabaseUnavailable` when it does not answer."""

    @abc.abstractmethod
    async def get_response(self, response_id: str, key_id: str) -> tuple[str, str] | None:
        """The `input` and `response` JSON texts of a response the key stored, or None."""

    @abc.abstractmethod
    async def delete_response(self, response_id: str, key_id: str) -> bool: ...

    @abc.abstractmethod
    async def prune_responses(self, before: str) -> int:
        """Delete the responses created before `before` (ISO-8601 UTC); how many went."""


def is_date(text: str) -> bool:
    """A `since` filter: a real calendar date written YYYY-MM-DD."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def new_secret() -> str:
    import secrets  # here: only making a key needs it, not every command that opens the store

    return "sk-" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    import secrets

    return "key_" + secrets.token_hex(6)
