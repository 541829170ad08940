"""Client keys in memory: lookup by hash, live usage, and pickup of changes.

The database is the truth; this registry mirrors it so the request path needs
no DB round trip. Changes made elsewhere (another process, the CLI, or SQL typed
into `sqlite3` or `psql`) are noticed through the store's `keys_version` (SQLite's
`data_version`; a trigger-bumped counter in PostgreSQL), polled every second, and
then the key rows are re-read whole: no timestamps are compared, so neither clock
skew between processes or machines nor a change in the same millisecond can hide one.

Making and changing keys (their limits checked) is gateway/keys.py, which also offers all of this: `gateway
keys list` and `show` import this module alone.
"""
from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from gateway.errors import AuthError
from gateway.limiter.windows import Budget, KeyUsage, rebuild_from
from gateway.store import KeyRow, Store, read_ledger_facts


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
