"""The command line's grammar: every command, flag and its help (SPEC section 2)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from gateway import __version__
from gateway.cli.common import DEFAULT_DB

_SERVE_ENV = """environment (a .env file in the current folder is read too; the environment wins):
  GATEWAY_MASTER_KEY  turns on the admin API (/admin) and the dashboard (/dashboard); `gateway init` makes one
  GATEWAY_DB          the database, as --db
  GATEWAY_LIMITS      where key limits are counted, as --limits
  GATEWAY_CONFIG      the routes file, as --config
  GATEWAY_LOG_LEVEL, GATEWAY_LOG_FORMAT  as --log-level, --log-format
  ${VAR}              each variable routes.yaml names (provider api keys)
"""


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() gives it (COLUMNS, else stdout's terminal, else 80).
    argparse makes a formatter for every add_argument, and its default one imports shutil, and with it
    bz2, lzma and zlib, for the width: 2 ms of every command, `keys list` and `spend` included."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns   # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


class _RawDescriptionFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        print(f"gateway: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get("GATEWAY_DB") or None,
                   help="SQLite file or postgresql://... URL (env GATEWAY_DB; else settings.db of the config; "
                        f"else {DEFAULT_DB})")
    p.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "routes.yaml"),
                   help="routes file (env GATEWAY_CONFIG; default routes.yaml)")


def _limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpm", type=int, help="requests per minute (whole number >= 1)")
    p.add_argument("--tpm", type=int, help="tokens per minute, prompt and completion (whole number >= 1)")
    p.add_argument("--budget", type=float, help="spend allowed per period, in USD (0: no spend at all)")
    p.add_argument("--period", choices=("never", "daily", "monthly"),
                   help="when the budget starts over (UTC): never (a lifetime budget), daily or monthly")
    p.add_argument("--models", help="comma-separated route names or aliases the key may use; empty for all")


def _json_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON, for scripts")


def _serve(sub: argparse._SubParsersAction[_Parser]) -> None:
    serve = sub.add_parser("serve", help="run the server", description="Run the gateway's HTTP server.",
                           epilog=_SERVE_ENV, formatter_class=_RawDescriptionFormatter)
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                                                           "0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "info"),
                       choices=("debug", "info", "warning", "error"),
                       help="least severe log lines written to stderr (env GATEWAY_LOG_LEVEL; default info)")
    serve.add_argument("--log-format", default=os.environ.get("GATEWAY_LOG_FORMAT", "json"), choices=("json", "text"),
                       help="one JSON object a line, or text for people (env GATEWAY_LOG_FORMAT; default json)")
    serve.add_argument("--no-access-log", action="store_true", help="no line per request (errors still logged)")
    serve.add_argument("--limits", default=os.environ.get("GATEWAY_LIMITS") or None,
                       help="where key limits are counted: memory, or redis://HOST:6379/0 shared by every process "
                            "(env GATEWAY_LIMITS; else settings.limiter of the config; else memory)")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes answering on the port (default 1; more needs --limits redis://)")


def _keys(sub: argparse._SubParsersAction[_Parser]) -> None:
    keys = sub.add_parser("keys", help="manage client keys (create, list, show, update, revoke)",
                          description="Client keys, straight in the database: a running server sees "
                                      "changes within 2 seconds.")
    ksub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser, metavar="COMMAND")
    create = ksub.add_parser("create", help="create a key and print its secret once")
    _common(create)
    create.add_argument("--name", required=True, help="a name to know the key by (required)")
    _limit_flags(create)
    _json_flag(create, "one object with id and key")
    listing = ksub.add_parser("list", help="every key with its limits and usage, never a secret")
    _common(listing)
    _json_flag(listing, "an array of key objects")
    show = ksub.add_parser("show", help="one key with its limits and usage")
    _common(show)
    show.add_argument("id", help="the key's id (key_...)")
    _json_flag(show, "the key object")
    update = ksub.add_parser("update", help="change a key's limits (only the flags given)")
    _common(update)
    update.add_argument("id", help="the key's id (key_...)")
    _limit_flags(update)
    revoke = ksub.add_parser("revoke", help="refuse a key from now on (its ledger rows stay)")
    _common(revoke)
    revoke.add_argument("id", help="the key's id (key_...)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description="OpenAI-compatible LLM gateway. Every command reads .env in "
                                                 "the current folder first (the environment wins).")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _serve(sub)
    check = sub.add_parser("check", help="validate the routes file")
    _common(check)
    sub.add_parser("init", help="write a GATEWAY_MASTER_KEY to .env for the admin API and dashboard",
                   description="Generate a master key and keep it in .env (created owner-only), "
                               "which every gateway command run in this folder reads.")
    _keys(sub)
    spend = sub.add_parser("spend", help="spend from the ledger")
    _common(spend)
    spend.add_argument("--by", choices=("key", "model", "day"), default="key", help="one row per key (default), "
                                                                                   "route or UTC day")
    spend.add_argument("--since", help="only requests from this UTC day on, YYYY-MM-DD")
    _json_flag(spend, "an array of the view's rows")
    return parser
