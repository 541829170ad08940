"""`gateway keys ...` and `gateway spend`: straight to the database, with or without a running server.

None of them needs a provider's secret: the routes file is read only for the database it names,
the key caps and the route names `--models` may use.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from gateway.cli.common import Fail, caps, config_if_any, database, plain, print_table, usd
from gateway.cli.dbfile import failure, open_database

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from gateway.store import Store

_KEY_COLUMNS = ("id", "name", "key_prefix", "rpm_limit", "tpm_limit", "max_budget", "budget_period", "models",
                "rpm_used", "tpm_used", "spend_period", "revoked_at")
_MONEY = ("max_budget", "spend_period", "spend_total", "cost_usd")
_READ_ONLY = ("list", "show")
# a value error names the admin API's field; on the command line, name the flag
_FLAGS = {"'rpm'": "--rpm", "'tpm'": "--tpm", "'max_budget'": "--budget", "'budget_period'": "--period",
          "'models'": "--models", "'name'": "--name"}


def _user_error(err: GatewayError, config: str) -> Fail:
    message = err.message.replace("settings.limits", f"settings.limits of {config}")
    for field, flag in _FLAGS.items():
        message = message.replace(field, flag)
    return Fail(message)


def _limits(args: argparse.Namespace) -> Any:
    from gateway.keys import KeyLimits, check_models

    models = None
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()] or None
    limits = KeyLimits(rpm=args.rpm, tpm=args.tpm, budget=args.budget, period=args.period, models=models,
                       models_given=args.models is not None)
    if models is not None:
        config = config_if_any(args)
        if config is None:
            raise Fail(f"--models names routes, and there is no routes file {args.config} to check them against "
                       f"(pass --config)")
        check_models(limits, config.route_names())
    return limits


def _budget_note(budget: float | None) -> str:
    if budget == 0:
        return "\nIts budget is $0: no spend is allowed, so only requests to routes priced at 0 are admitted."
    return ""


async def _key_write(args: argparse.Namespace, store: Store, now: float) -> int:
    """create / update / revoke: straight to the database; a running server picks it up."""
    from gateway.errors import GatewayError
    from gateway.keys import create_key, revoke_key, update_key
    from gateway.store import DatabaseUnavailable

    if args.keys_command == "revoke":
        revoked = await revoke_key(store, args.id, now)
        if revoked is None:
            raise Fail(f"no key {args.id!r}")
        print(f"revoked key {revoked.id}")
        return 0
    try:
        limits = _limits(args)
        if args.keys_command == "create":
            row, secret = await create_key(store, args.name, limits, caps(args), now)
        else:
            updated = await update_key(store, args.id, limits, caps(args), now)
    except DatabaseUnavailable:
        raise
    except GatewayError as err:
        raise _user_error(err, args.config) from None
    if args.keys_command == "update":
        if updated is None:
            raise Fail(f"no key {args.id!r}")
        print(f"updated key {updated.id}{_budget_note(args.budget)}")
    elif args.json:
        print(json.dumps({"id": row.id, "key": secret}))
    else:
        print(f"created key {row.id} ({row.name})\n{secret}\nThe secret is shown only now."
              f"{_budget_note(row.max_budget)}")
    return 0


async def _key_report(args: argparse.Namespace, store: Store, now: float) -> int:
    """list / show: limits and usage as the server would count them (rebuilt from the ledger)."""
    from gateway.registry import KeyRegistry

    registry = KeyRegistry()
    async with store.session():      # its six reads on one connection (the output is written after)
        await registry.load(store, now)
    reports = [s.report(now) for s in registry.by_id.values()]
    if args.keys_command == "show":
        reports = [r for r in reports if r["id"] == args.id]
        if not reports:
            raise Fail(f"no key {args.id!r}")
        if args.json:
            print(json.dumps(reports[0], indent=2))
        else:
            print("\n".join(f"{k}: {_shown(k, v)}" for k, v in reports[0].items()))
    elif args.json:
        print(json.dumps(reports, indent=2))
    else:
        print_table([{**r, "models": ",".join(r["models"]) if r["models"] else "*"} for r in reports],
                    _KEY_COLUMNS, _MONEY)
    return 0


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "all" if name == "models" else "-"
    if name == "models":
        return ",".join(value)
    if name in _MONEY:
        return usd(value)
    return plain(value) if isinstance(value, float) else str(value)


def _nothing_to_change(args: argparse.Namespace) -> bool:
    return args.keys_command == "update" and all(
        getattr(args, flag) is None for flag in ("rpm", "tpm", "budget", "period", "models"))


async def keys(args: argparse.Namespace) -> int:
    if _nothing_to_change(args):
        raise Fail(f"nothing to change for {args.id}: give --rpm, --tpm, --budget, --period or --models")
    from gateway.store import DatabaseUnavailable

    read_only = args.keys_command in _READ_ONLY
    store = await open_database(database(args), read_only)
    try:
        if read_only:
            return await _key_report(args, store, time.time())
        return await _key_write(args, store, time.time())
    except DatabaseUnavailable as err:     # opened, then refused: a read-only file, a locked or full disk
        raise failure(args.db, err, writing=not read_only) from None
    finally:
        await store.close()


async def spend(args: argparse.Namespace) -> int:
    from gateway.store import is_date

    if args.since is not None and not is_date(args.since):
        raise Fail("--since must be a date, YYYY-MM-DD")
    from gateway.store import DatabaseUnavailable

    store = await open_database(database(args), True)
    try:
        rows = await store.spend(args.by, args.since)
    except DatabaseUnavailable as err:
        raise failure(args.db, err, writing=False) from None
    finally:
        await store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    first = {"key": ("key_id", "name"), "model": ("model",), "day": ("day",)}[args.by]
    shown = [{**r, "model": r.get("model") or "(no route)"} if args.by == "model" else r for r in rows]
    have = set(rows[0]) if rows else set()
    columns = (*first, "requests", *(c for c in ("refused", "errors") if c in have), "prompt_tokens",
               "completion_tokens", *(c for c in ("cached_tokens",) if c in have), "cost_usd")
    print_table(shown, columns, _MONEY)
    return 0
