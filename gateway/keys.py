"""Client keys in memory: lookup by hash, live usage, and pickup of changes.

The database is the truth; this registry mirrors it so the request path needs
no DB round trip. Changes made elsewhere (another process, the CLI, or SQL typed
into `sqlite3` or `psql`) are noticed through the store's `keys_version` (SQLite's
`data_version`; a trigger-bumped counter in PostgreSQL), polled every second, and
then the key rows are re-read whole: no timestamps are compared, so neither clock
skew between processes or machines nor a change in the same millisecond can hide one.
"""
from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import AuthError, InvalidRequest
from gateway.limiter.windows import Budget, KeyUsage, rebuild_from
from gateway.store import KeyRow, Store, new_key_id, new_secret, read_ledger_facts, utc_iso

PREFIX_LEN = 10
PERIODS = ("never", "daily", "monthly")
NAME_MAX = 200


def bearer_token(authorization: str | None) -> str:
    """The credential of `Authorization: Bearer ...`; the scheme name is case-insensitive (RFC 9110)."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return ""
    return authorization[7:].strip()


def credential_bytes(text: str) -> bytes:
    """The bytes a credential arrived as. Header (and environment) text keeps bytes that are not
    UTF-8 as lone surrogates (`Bearer \\xff`); they must compare and hash, not raise."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:   # a surrogate no decoder made: still some bytes, still no key
        return text.encode("utf-8", "surrogatepass")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(credential_bytes(secret)).hexdigest()


@dataclass
class KeyState:
    row: KeyRow
    usage: KeyUsage

    def allows(self, route: str) -> bool:
        return self.row.models is None or route in self.row.models

    def report(self, now: float) -> dict[str, Any]:
        usage = self.usage
        usage.rpm.prune(now)
        usage.tpm.prune(now)
        usage.budget.roll(now)
        return {**self.row.public(), "rpm_used": usage.rpm.total, "tpm_used": usage.tpm.total,
                "spend_period": round(usage.budget.spent, 10), "spend_total": round(usage.budget.total, 10)}


class KeyRegistry:
    def __init__(self) -> None:
        self.by_hash: dict[str, KeyState] = {}
        self.by_id: dict[str, KeyState] = {}
        self.db_version: Hashable = None

    def authenticate(self, authorization: str | None) -> KeyState:
        token = bearer_token(authorization)
        if not token:
            raise AuthError("Missing API key: send 'Authorization: Bearer sk-...'.")
        state = self.by_hash.get(hash_secret(token))
        if state is None:
            raise AuthError("Invalid API key.")
        if state.row.revoked_at is not None:
            raise AuthError("This API key has been revoked.", code="key_revoked")
        return state

    def put(self, row: KeyRow) -> KeyState:
        state = self.by_id.get(row.id)
        if state is None:
            state = KeyState(row, KeyUsage(Budget(row.budget_period)))
            self.by_id[row.id] = state
            self.by_hash[row.key_hash] = state
        else:
            if state.row.key_hash != row.key_hash:     # a secret replaced by hand in the table
                self.by_hash.pop(state.row.key_hash, None)
                self.by_hash[row.key_hash] = state
            state.row = row
            state.usage.budget.period = row.budget_period
        return state

    async def load(self, store: Store, now: float) -> None:
        """All keys, then windows and period spend rebuilt from the ledger: a restart forgives nothing."""
        self.db_version = await store.keys_version()   # first, so a change made during the load is seen
        for row in await store.list_keys():
            self.put(row)
        facts = await read_ledger_facts(store, *rebuild_from(now))
        for key_id, t, tokens in facts.recent:
            state = self.by_id.get(key_id)
            if state is not None:
                state.usage.rpm.add(t, 1)
                state.usage.tpm.add(t, tokens)
        for key_id, state in self.by_id.items():
            state.usage.budget.load(now, facts.day.get(key_id, 0.0), facts.month.get(key_id, 0.0),
                                    facts.total.get(key_id, 0.0))

    async def refresh(self, store: Store) -> int:
        """Pick up keys another process changed; returns how many changed."""
        version = await store.keys_version()
        if version == self.db_version:
            return 0
        self.db_version = version
        rows = await store.list_keys()
        changed = 0
        for row in rows:
            state = self.by_id.get(row.id)
            if state is None or state.row != row:
                self.put(row)
                changed += 1
        for key_id in self.by_id.keys() - {row.id for row in rows}:   # deleted by hand: gone at once
            self.by_hash.pop(self.by_id.pop(key_id).row.key_hash, None)
            changed += 1
        return changed


@dataclass
class KeyLimits:
    """Validated limits for a new or changed key (SPEC sections 2 and 8)."""

    rpm: int | None = None
    tpm: int | None = None
    budget: float | None = None
    period: str | None = None
    models: list[str] | None = None
    models_given: bool = False


def check_limits(limits: KeyLimits, caps: Any) -> None:
    """Raise a 400 naming the field when a value is wrong or above its cap."""
    checks = (("rpm", limits.rpm, caps.max_rpm), ("tpm", limits.tpm, caps.max_tpm),
              ("max_budget", limits.budget, caps.max_budget))
    for field, value, cap in checks:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (field != "max_budget" and not isinstance(value, int)):
            raise InvalidRequest(f"'{field}' must be a {'number' if field == 'max_budget' else 'whole number'}.",
                                 param=field, code="invalid_type")
        if value < (0 if field == "max_budget" else 1):
            raise InvalidRequest(f"'{field}' must be positive.", param=field)
        if value > cap:
            raise InvalidRequest(f"'{field}' of {plain(value)} is above the cap of {plain(cap)} set in "
                                 f"settings.limits.", param=field)
    if limits.period is not None and limits.period not in PERIODS:
        raise InvalidRequest("'budget_period' must be never, daily or monthly.", param="budget_period")
    if limits.models is not None and (not isinstance(limits.models, list)
                                      or not all(isinstance(m, str) and m for m in limits.models)):
        raise InvalidRequest("'models' must be an array of model names.", param="models", code="invalid_type")


def check_models(limits: KeyLimits, names: Mapping[str, str]) -> None:
    """`models` must name routes of the loaded config (`names`: every route name and alias -> its route);
    an alias is kept as its route's name, since that is what a request is checked against. Else a 400."""
    models = limits.models
    if models is None:
        return
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise InvalidRequest("'models' must be an array of model names.", param="models", code="invalid_type")
    unknown = [m for m in models if m not in names]
    if unknown:
        known = ", ".join(sorted(set(names.values()))) or "none"
        raise InvalidRequest(f"'models' names {unknown[0]!r}, which is no route or alias (routes: {known}).",
                             param="models", code="invalid_value")
    limits.models = list(dict.fromkeys(names[m] for m in models))


def plain(value: float) -> str:
    """A number as a person writes it: 1000000, 0.5, 2.75; never 1e+06."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_name(name: Any) -> str:
    """A key's name, trimmed: at most NAME_MAX characters, none of them a control character; else a 400.

    Control characters (a NUL, a newline, a terminal escape) and lone surrogates are refused: a database
    may refuse them (PostgreSQL takes no NUL), and they would reach terminals and tables verbatim.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("'name' is required.", param="name", code="missing_required_parameter")
    trimmed = name.strip()
    if len(trimmed) > NAME_MAX:
        raise InvalidRequest(f"'name' is longer than {NAME_MAX} characters.", param="name")
    if not trimmed.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in trimmed):
        raise InvalidRequest("'name' must not contain control characters.", param="name")
    return trimmed


async def create_key(store: Store, name: Any, limits: KeyLimits, caps: Any, now: float) -> tuple[KeyRow, str]:
    name = check_name(name)
    check_limits(limits, caps)
    secret = new_secret()
    row = await store.create_key(
        key_id=new_key_id(), name=name, key_prefix=secret[:PREFIX_LEN], key_hash=hash_secret(secret),
        rpm=limits.rpm if limits.rpm is not None else caps.default_rpm,
        tpm=limits.tpm if limits.tpm is not None else caps.default_tpm,
        budget=limits.budget if limits.budget is not None else caps.default_budget,
        period=limits.period or "never", models=limits.models, now=utc_iso(now))
    return row, secret


async def update_key(store: Store, key_id: str, limits: KeyLimits, caps: Any, now: float) -> KeyRow | None:
    check_limits(limits, caps)
    changes: dict[str, Any] = {}
    for column, value in (("rpm_limit", limits.rpm), ("tpm_limit", limits.tpm), ("max_budget", limits.budget),
                          ("budget_period", limits.period)):
        if value is not None:
            changes[column] = value
    if limits.models_given:
        changes["models"] = limits.models
    return await store.update_key(key_id, changes, utc_iso(now))


async def revoke_key(store: Store, key_id: str, now: float) -> KeyRow | None:
    row = await store.get_key(key_id)
    if row is None or row.revoked_at is not None:
        return row
    return await store.update_key(key_id, {"revoked_at": utc_iso(now)}, utc_iso(now))
