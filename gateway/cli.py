"""The `gateway` command line: arguments -> settings -> run (SPEC section 2).

Bad flags or values end in a one-line error and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from gateway.config import Config, ConfigError, Limits, load_config
from gateway.store import DatabaseUnavailable

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from gateway.store import Store

DEFAULT_DB = "gateway.db"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        print(f"gateway: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class Fail(Exception):
    """A user error: printed as one line, exit 1."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get("GATEWAY_DB") or None,
                   help="SQLite file or postgresql://... URL (env GATEWAY_DB; else settings.db of the config; "
                        f"else {DEFAULT_DB})")
    p.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "routes.yaml"),
                   help="routes file (env GATEWAY_CONFIG)")


def _limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpm", type=int)
    p.add_argument("--tpm", type=int)
    p.add_argument("--budget", type=float, help="USD")
    p.add_argument("--period", choices=("never", "daily", "monthly"))
    p.add_argument("--models", help="comma-separated route names; empty for all")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description="OpenAI-compatible LLM gateway")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the server")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "info"),
                       choices=("debug", "info", "warning", "error"))
    serve.add_argument("--log-format", default=os.environ.get("GATEWAY_LOG_FORMAT", "json"), choices=("json", "text"))
    serve.add_argument("--no-access-log", action="store_true", help="no line per request (errors still logged)")
    serve.add_argument("--limits", default=os.environ.get("GATEWAY_LIMITS") or None,
                       help="where key limits are counted: memory, or redis://HOST:6379/0 shared by every process "
                            "(env GATEWAY_LIMITS; else settings.limiter of the config; else memory)")
    serve.add_argument("--workers", type=int, default=1, help="processes answering on the port (needs --limits redis://)")
    check = sub.add_parser("check", help="validate the config")
    _common(check)
    keys = sub.add_parser("keys", help="manage client keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    create = ksub.add_parser("create")
    _common(create)
    create.add_argument("--name", required=True)
    _limit_flags(create)
    create.add_argument("--json", action="store_true")
    for name in ("list", "show"):
        p = ksub.add_parser(name)
        _common(p)
        if name == "show":
            p.add_argument("id")
        p.add_argument("--json", action="store_true")
    update = ksub.add_parser("update")
    _common(update)
    update.add_argument("id")
    _limit_flags(update)
    revoke = ksub.add_parser("revoke")
    _common(revoke)
    revoke.add_argument("id")
    spend = sub.add_parser("spend", help="spend from the ledger")
    _common(spend)
    spend.add_argument("--by", choices=("key", "model", "day"), default="key")
    spend.add_argument("--since", help="YYYY-MM-DD")
    spend.add_argument("--json", action="store_true")
    return parser


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as err:
        raise Fail("\n".join(err.problems)) from None


def _database(args: argparse.Namespace, config: Config | None = None) -> str:
    """--db / GATEWAY_DB win over settings.db of the routes file; gateway.db when neither says."""
    if not args.db:
        if config is None and os.path.exists(args.config):
            config = _load(args.config)
        args.db = (config.settings.db if config is not None else None) or DEFAULT_DB
    db: str = args.db
    return db


def _caps(path: str) -> Limits:
    """Key caps come from the config when there is one; defaults otherwise."""
    return _load(path).settings.limits if os.path.exists(path) else Limits()


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem)
        return 1
    print(f"ok: {len(config.providers)} providers, {len(config.routes)} routes")
    return 0


def _lift_open_files_limit() -> None:
    """Each open stream needs two sockets (client and upstream): a soft limit of 1024 would cap
    the server near 500 streams, so take what the hard limit allows."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import create_app
    from gateway.appkeys import ServerOptions
    from gateway.limiter import describe
    from gateway.ops import logs

    logs.setup(args.log_level, args.log_format)
    _lift_open_files_limit()
    if args.no_access_log:
        logs.ACCESS.setLevel(logging.WARNING)
    config = _load(args.config)
    limiter = _limiter(args, config)
    options = ServerOptions(config_path=args.config, db_path=_database(args, config),
                            master_key=os.environ.get("GATEWAY_MASTER_KEY") or None,
                            ledger=os.environ.get("GATEWAY_BENCH_LEDGER_OFF") != "1", limiter_url=limiter)
    if not options.ledger:
        logging.getLogger("gateway").warning("GATEWAY_BENCH_LEDGER_OFF=1: no ledger rows are written (bench only)")
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    run: dict[str, Any] = dict(print=None, access_log=None, handler_cancellation=True, shutdown_timeout=15)
    if args.workers > 1:
        from gateway import workers

        asyncio.run(_migrate(options.db_path))    # once, before the workers open the database together
        return workers.serve(lambda sock: web.run_app(create_app(config, options), sock=sock, **run),
                             args.host, args.port, args.workers,
                             f"gateway: serving {len(config.routes)} routes on http://{{}}/v1 with {args.workers} "
                             f"workers, limits in {describe(limiter)}")
    app = create_app(config, options)
    print(f"gateway: serving {len(config.routes)} routes on http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(app, host=args.host, port=args.port, **run)
    return 0


def _limiter(args: argparse.Namespace, config: Config) -> str:
    """--limits / GATEWAY_LIMITS win over settings.limiter; several workers need a shared limiter."""
    from gateway.limiter import check_limiter_url

    chosen = args.limits or config.settings.limiter
    try:
        check_limiter_url(chosen)
    except ValueError as err:
        raise Fail(f"--limits {err}") from None
    if args.workers < 1:
        raise Fail("--workers must be 1 or more")
    if args.workers > 1 and chosen == "memory":
        raise Fail(f"--workers {args.workers} needs shared limits: with --limits memory every process would "
                   f"count each key's limits alone; pass --limits redis://HOST:6379/0")
    return chosen


async def _migrate(db: str) -> None:
    from gateway.store import open_store

    store = await open_store(db)
    await store.close()


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else f"{r[c]:.6f}" if isinstance(r.get(c), float) else str(r[c]))
              for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


_KEY_COLUMNS = ("id", "name", "key_prefix", "rpm_limit", "tpm_limit", "max_budget", "budget_period", "models",
                "rpm_used", "tpm_used", "spend_period", "revoked_at")


# a value error names the admin API's field; on the command line, name the flag
_FLAGS = {"'rpm'": "--rpm", "'tpm'": "--tpm", "'max_budget'": "--budget", "'budget_period'": "--period",
          "'models'": "--models", "'name'": "--name"}


def _user_error(err: GatewayError, config: str) -> Fail:
    message = err.message.replace("settings.limits", f"settings.limits of {config}")
    for field, flag in _FLAGS.items():
        message = message.replace(field, flag)
    return Fail(message)


async def _key_write(args: argparse.Namespace, store: Store, now: float) -> int:
    """create / update / revoke: straight to the database; a running server picks it up."""
    from gateway.errors import GatewayError
    from gateway.keys import KeyLimits, create_key, revoke_key, update_key

    if args.keys_command == "revoke":
        revoked = await revoke_key(store, args.id, now)
        if revoked is None:
            raise Fail(f"no key {args.id!r}")
        print(f"revoked key {revoked.id}")
        return 0
    models = None
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()] or None
    limits = KeyLimits(rpm=args.rpm, tpm=args.tpm, budget=args.budget, period=args.period, models=models,
                       models_given=args.models is not None)
    try:
        if args.keys_command == "create":
            row, secret = await create_key(store, args.name, limits, _caps(args.config), now)
        else:
            updated = await update_key(store, args.id, limits, _caps(args.config), now)
    except GatewayError as err:
        raise _user_error(err, args.config) from None
    if args.keys_command == "update":
        if updated is None:
            raise Fail(f"no key {args.id!r}")
        print(f"updated key {updated.id}")
    elif args.json:
        print(json.dumps({"id": row.id, "key": secret}))
    else:
        print(f"created key {row.id} ({row.name})\n{secret}\nThe secret is shown only now.")
    return 0


async def _key_report(args: argparse.Namespace, store: Store, now: float) -> int:
    """list / show: limits and usage as the server would count them (rebuilt from the ledger)."""
    from gateway.keys import KeyRegistry

    registry = KeyRegistry()
    await registry.load(store, now)
    reports = [s.report(now) for s in registry.by_id.values()]
    if args.keys_command == "show":
        reports = [r for r in reports if r["id"] == args.id]
        if not reports:
            raise Fail(f"no key {args.id!r}")
        text = "\n".join(f"{k}: {v}" for k, v in reports[0].items())
        print(json.dumps(reports[0], indent=2) if args.json else text)
    elif args.json:
        print(json.dumps(reports, indent=2))
    else:
        _print_table([{**r, "models": ",".join(r["models"]) if r["models"] else "*"} for r in reports],
                     _KEY_COLUMNS)
    return 0


async def _keys(args: argparse.Namespace) -> int:
    from gateway.store import open_store

    store = await open_store(_database(args))
    try:
        if args.keys_command in ("list", "show"):
            return await _key_report(args, store, time.time())
        return await _key_write(args, store, time.time())
    finally:
        await store.close()


async def _spend(args: argparse.Namespace) -> int:
    from gateway.store import is_date, open_store

    if args.since is not None and not is_date(args.since):
        raise Fail("--since must be a date, YYYY-MM-DD")
    store = await open_store(_database(args))
    try:
        rows = await store.spend(args.by, args.since)
    finally:
        await store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        first = {"key": ("key_id", "name"), "model": ("model",), "day": ("day",)}[args.by]
        _print_table(rows, (*first, "requests", "prompt_tokens", "completion_tokens", "cost_usd"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "keys":
            return asyncio.run(_keys(args))
        return asyncio.run(_spend(args))
    except Fail as err:
        print(f"gateway: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"gateway: error: {err.strerror or err}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as err:   # not a database, no such directory, locked too long; a server away
        print(f"gateway: error: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
