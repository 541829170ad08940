"""Log formatting: one JSON object per line by default, `key=value` text for people.

The access log is one line per chat request with the fields operators filter
on; it never carries a secret or a prompt. Every message passes the app's
scrubber (the secret values it holds, and key shapes), so a key echoed by an
upstream cannot reach a log whatever its shape.
"""
from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

import orjson

from gateway.scrub import Scrubber

ACCESS = logging.getLogger("gateway.access")

_ACCESS_FIELDS = ("request_id", "key_id", "route", "provider", "upstream_model", "stream", "status", "http_status",
                  "error_code", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "latency_ms",
                  "ttft_ms", "attempts")


class _Scrubbing(logging.Formatter):
    """A formatter that scrubs every message; `scrub_with` hands it the app's scrubber."""

    scrubber = Scrubber()

    def _base(self, record: logging.LogRecord) -> dict[str, Any]:
        return {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name,
                "msg": self.scrubber.text(record.getMessage())}


class JsonFormatter(_Scrubbing):
    def format(self, record: logging.LogRecord) -> str:
        out = self._base(record)
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None and record.levelno >= logging.ERROR:
            out["error"] = record.exc_info[0].__name__
        return orjson.dumps(out).decode()


class TextFormatter(_Scrubbing):
    def format(self, record: logging.LogRecord) -> str:
        out = self._base(record)
        line = f"{out['ts']} {out['level']:<7} {out['logger']}: {out['msg']}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items() if v is not None)
        return line


def _plain(value: Any) -> Any:
    """A float as written by hand (0.0000138, not 1.38e-05)."""
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return value


def setup(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def scrub_with(scrubber: Scrubber) -> None:
    """Point the root handlers' formatters at the app's scrubber (it learns secrets on reload)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _Scrubbing):
            handler.formatter.scrubber = scrubber


def _fields(row: dict[str, Any], key_prefix: str) -> dict[str, Any]:
    fields = {name: row.get(name) for name in _ACCESS_FIELDS}
    if isinstance(fields["cost_usd"], float):
        fields["cost_usd"] = round(fields["cost_usd"], 10)    # no float noise (0.000013799999999999998)
    fields["key_prefix"] = key_prefix
    return fields


def access(row: dict[str, Any], key_prefix: str) -> None:
    """One line per request, through the logging module; free when the access logger is off."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("request", extra={"fields": _fields(row, key_prefix)})


class AccessLog:
    """The access log of a served gateway: each line formatted straight from the row, as the handler's
    formatter would, and written in one batch every `every` seconds rather than one write (and flush)
    per request. Only when the root logger has just the handler `setup` made; with any other handler
    (a test's, a library's) each line goes through the logging module at once, as `access` does."""

    def __init__(self, every: float = 0.05, most: int = 1024):
        self._every, self._most = every, most
        self._lines: list[str] = []
        self._handler: logging.StreamHandler[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def record(self, row: dict[str, Any], key_prefix: str) -> None:
        if not ACCESS.isEnabledFor(logging.INFO):
            return
        handler = _direct_handler()
        if handler is None:
            ACCESS.info("request", extra={"fields": _fields(row, key_prefix)})
            return
        self._handler = handler
        self._lines.append(self._line(handler.formatter, _fields(row, key_prefix)))
        if len(self._lines) >= self._most:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every, self.flush)

    def flush(self) -> None:
        """Write what is buffered (the timer's, and the app's cleanup at a stop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines = self._lines, []
        handler = self._handler
        if not lines or handler is None:
            return
        handler.acquire()
        try:
            handler.stream.write("".join(lines))
            handler.flush()
        except (OSError, ValueError):
            pass   # a closed or full stderr loses access lines, never a request
        finally:
            handler.release()

    def _line(self, formatter: logging.Formatter | None, fields: dict[str, Any]) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        ts = f"{self._stamp}.{int((now - second) * 1000):03d}Z"
        if isinstance(formatter, TextFormatter):
            pairs = " ".join(f"{k}={_plain(v)}" for k, v in fields.items() if v is not None)
            return f"{ts} info    gateway.access: request {pairs}\n"
        head = {"ts": ts, "level": "info", "logger": "gateway.access", "msg": "request"}
        return orjson.dumps({**head, **fields}).decode() + "\n"


def _direct_handler() -> logging.StreamHandler[Any] | None:
    """The one handler `setup` put on the root logger, if it is still the only one."""
    handlers = logging.getLogger().handlers
    if len(handlers) != 1 or ACCESS.handlers or not ACCESS.propagate:
        return None
    handler = handlers[0]
    if type(handler) is logging.StreamHandler and isinstance(handler.formatter, _Scrubbing) \
            and handler.level <= logging.INFO:
        return handler
    return None
