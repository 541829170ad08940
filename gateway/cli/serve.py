"""`gateway serve`: settings -> the app -> running, and saying so only once it is true.

The first line ("serving ...") is printed once the database is open and the port is bound;
the second says whether the admin API and dashboard are on. On SIGTERM or SIGINT the server
stops taking connections, lets the requests in flight finish (at most SHUTDOWN_SECONDS, then
cancels them: each still gets its ledger row), writes the ledger, and says each step.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
from typing import Any

from aiohttp import web

from gateway.cli.common import Fail, database, load, plural
from gateway.cli.dbfile import failure
from gateway.config import Config
from gateway.store import DatabaseUnavailable

SHUTDOWN_SECONDS = 15


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


def _origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(config: Config, origin: str, db: str, limiter: str, master: bool, workers: int = 1) -> str:
    from gateway.limiter import describe
    from gateway.store import redact_url

    what = f" with {workers} workers" if workers > 1 else ""
    lines = [f"gateway: serving {plural(len(config.routes), 'route')} on {origin}/v1{what} "
             f"(database {redact_url(db)}, limits in {describe(limiter)})"]
    if master:
        lines.append(f"gateway: admin API on {origin}/admin, dashboard on {origin}/dashboard "
                     f"(sign in with GATEWAY_MASTER_KEY)")
    else:
        lines.append("gateway: admin API and dashboard off: no GATEWAY_MASTER_KEY (`gateway init` writes one to .env)")
    return "\n".join(lines)


async def settle_gc(app: web.Application) -> None:
    """At start-up's end, what start-up built (modules, routes, the app) is frozen out of the cyclic garbage
    collector's walks: under load the collector took 19-30 us a request (5% of the CPU), most of it walking
    start-up's 53,000 objects again in every full collection. Young collections keep Python's thresholds:
    waiting for 10,000 objects instead let a 20,000-request run's memory grow 11% (tests/test_load.py).
    Only `gateway serve` does this: an app made inside another program (the tests) leaves its collector alone.
    """
    gc.collect()
    gc.freeze()
    logging.getLogger("gateway").debug("collector: %d start-up objects frozen", gc.get_freeze_count())


def _say_stopping(app: web.Application, started: list[bool]) -> None:
    """Hooks that tell the operator what a stop does, step by step (only for a server that started)."""
    from gateway.appkeys import LEDGER, METRICS

    who = f"gateway (pid {os.getpid()})" if started[1:] else "gateway"

    async def stopping(app: web.Application) -> None:
        if started[0]:
            in_flight = app[METRICS].in_flight
            print(f"{who}: stopping: no new connections; finishing {plural(in_flight, 'request')} in flight "
                  f"(at most {SHUTDOWN_SECONDS} s, then they are cancelled), then writing the ledger", flush=True)

    async def stopped(app: web.Application) -> None:
        if started[0]:
            ledger = app.get(LEDGER)
            written = getattr(ledger, "written", 0)
            left = getattr(ledger, "depth", 0) + getattr(ledger, "dropped", 0)
            lost = f"; {plural(left, 'row')} could not be written" if left else ""
            print(f"{who}: stopped: ledger written ({plural(written, 'row')} this run{lost})", flush=True)

    app.on_shutdown.append(stopping)
    app.on_cleanup.append(stopped)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.appkeys import ServerOptions
    from gateway.ops import logs

    logs.setup(args.log_level, args.log_format)
    _lift_open_files_limit()
    if args.no_access_log:
        logs.ACCESS.setLevel(logging.WARNING)
    config = load(args.config)
    limiter = _limiter(args, config)
    options = ServerOptions(config_path=args.config, db_path=database(args, config),
                            master_key=os.environ.get("GATEWAY_MASTER_KEY") or None,
                            ledger=os.environ.get("GATEWAY_BENCH_LEDGER_OFF") != "1", limiter_url=limiter)
    _writable(options.db_path)
    if not options.ledger:
        logging.getLogger("gateway").warning("GATEWAY_BENCH_LEDGER_OFF=1: no ledger rows are written (bench only)")
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    text = banner(config, "{origin}", options.db_path, limiter, options.master_key is not None, args.workers)
    started = [False] if args.workers == 1 else [False, True]    # [bound and open, one of several workers]

    def ready(_: str) -> None:
        started[0] = True
        if args.workers == 1:
            print(text.replace("{origin}", _origin(args.host, args.port)), flush=True)

    def app() -> web.Application:
        made = create_app(config, options)
        _say_stopping(made, started)
        made.on_startup.append(settle_gc)
        return made

    run: dict[str, Any] = dict(access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_SECONDS,
                               print=ready)
    try:
        if args.workers > 1:
            from gateway import workers

            asyncio.run(_migrate(options.db_path))    # once, before the workers open the database together
            return workers.serve(lambda sock: web.run_app(app(), sock=sock, **run), args.host, args.port,
                                 args.workers, text)
        web.run_app(app(), host=args.host, port=args.port, **run)
    except OSError as exc:
        raise Fail(_listen_error(args.host, args.port, exc)) from None
    except DatabaseUnavailable as err:       # the database did not open: say why, before anything else
        raise failure(options.db_path, err, writing=True) from None
    return 0


def _writable(db: str) -> None:
    """SQLite opens a file it may not write without a word, and the server would then fail on its
    first ledger row: refuse to start instead, saying why."""
    from gateway.cli.dbfile import explain
    from gateway.store import is_postgres_url

    if not is_postgres_url(db):
        problem = explain(db, writing=True)
        if problem:
            raise Fail(problem)


def _listen_error(host: str, port: int, exc: OSError) -> str:
    import errno
    import socket

    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: no such host or address {host!r}"
    reasons = {errno.EADDRINUSE: "the port is in use (another gateway or server is on it)",
               errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
               errno.EACCES: "permission denied (ports below 1024 need privileges)"}
    return f"{where}: {reasons.get(exc.errno or 0, (exc.strerror or str(exc)).lower())}"


async def _migrate(db: str) -> None:
    from gateway.store import open_store

    store = await open_store(db)
    await store.close()
