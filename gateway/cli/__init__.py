"""The `gateway` command line: arguments -> settings -> run (SPEC section 2).

Bad flags or values end in a one-line error and a non-zero exit, never a traceback. Every
command first reads `.env` in the current folder (envfile.py); args.py is the grammar,
serve.py runs the server, keys.py the key and spend commands, dbfile.py opens the database
and says why it cannot.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import envfile
from gateway.cli.args import build_parser
from gateway.cli.common import Fail, plural
from gateway.store import DatabaseUnavailable

__all__ = ["build_parser", "main"]


def cmd_check(config_path: str) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.prices import price_report

    try:
        config = load_config(config_path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem)
        return 1
    print(f"ok: {plural(len(config.providers), 'provider')}, {plural(len(config.routes), 'route')}")
    for line in price_report(config):
        print(line)
    return 0


def _run(argv: Sequence[str] | None) -> int:
    envfile.apply()
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "init":
        return envfile.init()
    if args.command == "serve":
        from gateway.cli.serve import cmd_serve
        return cmd_serve(args)
    return _database_command(args, program=argv is None)


def _database_command(args: argparse.Namespace, program: bool) -> int:
    """keys and spend. Python's cyclic garbage collector stays off while they run: their imports (asyncio,
    asyncpg) make some 20,000 objects, which set off about 40 collections, and little of it is garbage. When
    this is the program (`gateway ...`, not main() called in-process), what is left is frozen at the end, so
    the interpreter's exit does not walk it all again; the process ends and its memory goes with it."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        import asyncio  # here: `--version`, `init` and `check` run without it (40-70 ms of imports)

        from gateway.cli import keys
        if args.command == "keys":
            return asyncio.run(keys.keys(args))
        return asyncio.run(keys.spend(args))
    finally:
        if program:
            gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except Fail as err:
        print(f"gateway: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"gateway: error: {(err.strerror or str(err)).lower()}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as err:   # not a database, no such directory, locked too long; a server away
        print(f"gateway: error: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

