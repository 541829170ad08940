"""Spend roll-ups: the ledger summed per UTC day, key and route, so spend costs keys x days, not rows.

`spend_daily` (migrations/0005_spend_rollups.sql) holds one row per (day, key_id, route) with the
same sums the spend views show. It is written in the transaction that writes the ledger batch
(SQLite: `ROLL_UP_SQLITE` over the rows the batch added; PostgreSQL: a statement trigger over
COPY's transition table), and built from the existing rows by that migration, so it always equals
the sums of `requests`. Budgets' period spend (`spend_since`), `gateway spend` and the spend views
read it instead of every row of the ledger.

What a roll-up counts (the spend views' rules, migrations/0004): `requests` and the token sums are
the admitted requests' (status other than `rejected`); `cost_usd` is every counted row's; `refused`
counts requests refused for a key's limits, budget or model list; `errors` the upstream failures;
other rejected rows (client mistakes) are not spend.
"""
from __future__ import annotations

from gateway.store.base import REFUSAL_CODES

TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens")
SUMS = ("requests", *TOKENS, "cost_usd", "refused", "errors")
_GROUPS = {   # by -> (the columns it shows, the grouping, a join)
    "key": ("s.key_id AS key_id, k.name AS name", "s.key_id, k.name", "LEFT JOIN api_keys k ON k.id = s.key_id"),
    "model": ("NULLIF(s.route, '') AS model", "s.route", ""),
    "day": ("s.day AS day", "s.day", ""),
}
_COUNTED = f"(status <> 'rejected' OR error_code IN ({', '.join(repr(c) for c in REFUSAL_CODES)}))"
_ROW_SUMS = ", ".join([
    "SUM(CASE WHEN status <> 'rejected' THEN 1 ELSE 0 END)",
    *(f"SUM(CASE WHEN status <> 'rejected' THEN {c} ELSE 0 END)" for c in TOKENS),
    "SUM(cost_usd)",
    "SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)"])


def roll_up(source: str, where: str = "TRUE", table: str = "spend_daily") -> str:
    """INSERT ... ON CONFLICT adding the sums of `source`'s counted rows (`where` narrows them) to `table`;
    in (day, key_id, route) order, so concurrent writers lock roll-up rows in one order (no deadlock)."""
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUMS)
    return (f"INSERT INTO {table} (day, key_id, route, {', '.join(SUMS)}) "
            f"SELECT substr(created_at, 1, 10), key_id, COALESCE(route, ''), {_ROW_SUMS} "
            f"FROM {source} WHERE {where} AND {_COUNTED} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
            f"ON CONFLICT (day, key_id, route) DO UPDATE SET {updates}")


# SQLite: the rows one batch added are those past the id before its first (one INSERT in a transaction
# that holds the write lock gives its rows consecutive ids: lastrowid - rowcount + 1 .. lastrowid).
ROLL_UP_SQLITE = roll_up("requests", "id > ?")


def spend_sql(by: str, since: str | None, placeholder: str, postgres: bool) -> str:
    """`gateway spend` / `GET /admin/spend`: the view's rows, or the same sums from day `since` on."""
    views = {"key": "spend_by_key", "model": "spend_by_model", "day": "spend_by_day"}
    if since is None:
        sql = f"SELECT * FROM {views[by]}"
    else:
        columns, group, join = _GROUPS[by]
        whole = "::bigint" if postgres else ""      # PostgreSQL sums BIGINT as NUMERIC
        sums = ", ".join(f"SUM(s.{c}){'' if c == 'cost_usd' else whole} AS {c}" for c in SUMS)
        sql = (f"SELECT {columns}, {sums} FROM spend_daily s {join} "
               f"WHERE s.day >= {placeholder} GROUP BY {group}")
    first = {"key": "key_id", "model": "model", "day": "day"}[by]
    return sql + (" ORDER BY day" if by == "day" else f" ORDER BY cost_usd DESC, requests DESC, {first}")


def spend_since_sql(since: str, p1: str, p2: str) -> tuple[str, tuple[str, ...]]:
    """Each key's spend from the instant `since` (ISO-8601 UTC; "" for ever): whole days from the roll-ups,
    and only for a `since` inside a day (never at start-up, where days and months start at midnight) that
    day's later rows from the ledger, through its time index."""
    day = since[:10]
    if since == "" or since[10:] == "T00:00:00.000Z":
        return f"SELECT key_id, SUM(cost_usd) FROM spend_daily WHERE day >= {p1} GROUP BY key_id", (day,)
    return (f"SELECT key_id, SUM(c) FROM (SELECT key_id, cost_usd AS c FROM spend_daily WHERE day > {p1} "
            f"UNION ALL SELECT key_id, cost_usd FROM requests WHERE created_at >= {p2} "
            f"AND created_at < {p1} || 'U') AS spent GROUP BY key_id"), (day, since)
