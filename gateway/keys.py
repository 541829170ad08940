"""Making and changing client keys: their limits and names checked (SPEC sections 2 and 8), then written.

The registry of keys in memory (lookup by hash, live usage, pickup of changes) is gateway/registry.py,
offered here too; `gateway keys list` and `show` import only that.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidRequest
from gateway.registry import KeyRegistry, KeyState, bearer_token, credential_bytes, hash_secret
from gateway.store import KeyRow, Store, new_key_id, new_secret, utc_iso

__all__ = ["NAME_MAX", "PERIODS", "PREFIX_LEN", "KeyLimits", "KeyRegistry", "KeyState", "bearer_token",
           "check_limits", "check_models", "check_name", "create_key", "credential_bytes", "hash_secret", "plain",
           "revoke_key", "update_key"]

PREFIX_LEN = 10
PERIODS = ("never", "daily", "monthly")
NAME_MAX = 200


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
