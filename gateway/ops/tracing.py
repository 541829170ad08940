"""Whether the gateway traces, and the tracer's lifetime (SPEC 12).

Tracing is on when `settings.tracing.otlp_endpoint` or the environment's
OTEL_EXPORTER_OTLP_ENDPOINT is set, decided once at start (the setting wins). Off,
`app[TRACING]` is None, nothing of OpenTelemetry is imported (`gateway.ops.otel`
is imported here, only when on) and each hook of the core is one attribute check.
On, the provider is shut down with the app, waiting for the collector a bounded time.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from gateway.appkeys import METRICS, TABLE, TRACING

log = logging.getLogger("gateway.ops.tracing")

ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_PATH = "/v1/traces"
SHUTDOWN_WAIT = 3.0   # seconds the app's cleanup waits for the last spans to reach the collector


def traces_url(configured: str | None, environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL, or None when tracing is off.

    Both the setting and the variable name the collector's base URL (`http://collector:4318`),
    as OTEL_EXPORTER_OTLP_ENDPOINT does everywhere, and `/v1/traces` is added; a URL that
    already ends with it is taken as it is. A variable that is not an http(s) URL is ignored
    (and said so), since it is not ours to refuse to start over.
    """
    base = configured or environ.get(ENV_ENDPOINT, "").strip() or None
    if base is None:
        return None
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", base):
        log.warning("%s is not an http:// or https:// URL: tracing stays off", ENV_ENDPOINT)
        return None
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


async def in_thread(blocking: Callable[[], object], wait: float) -> bool:
    """Run `blocking` on a daemon thread and wait at most `wait` seconds for it; False if it is still running.

    Not the loop's default executor: an export stuck on a dead collector must hold neither the
    loop nor the process's exit.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            blocking()
        except Exception as exc:
            log.warning("the trace exporter failed: %s", type(exc).__name__)
        finally:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:   # the loop closed meanwhile: nobody waits any more
                pass

    threading.Thread(target=run, name="gateway-tracing", daemon=True).start()
    try:
        await asyncio.wait_for(done, wait)
    except TimeoutError:
        return False
    return True


async def tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    """`app[TRACING]`: the tracer while tracing is on, else None."""
    settings = app[TABLE].table.settings.tracing
    url = traces_url(settings.otlp_endpoint, os.environ)
    if url is None:
        app[TRACING] = None
        yield
        return
    from gateway.ops.otel import Tracing  # the one import of OpenTelemetry, when on

    tracing = Tracing(url, settings.service_name, settings.sample_ratio)
    app[TRACING] = tracing
    app[METRICS].watch_tracing(tracing.counts)
    log.info("tracing on: spans go to the OTLP/HTTP collector at %s", urlsplit(url).hostname)
    try:
        yield
    finally:
        if not await in_thread(tracing.shutdown, SHUTDOWN_WAIT):
            log.warning("the trace collector did not take the last spans within %gs; they are dropped",
                        SHUTDOWN_WAIT)
