"""Hot reload of routes.yaml (mtime polling and SIGHUP) and pickup of key changes.

A changed file is validated whole and swapped in between requests; a broken
edit is logged with its YAML paths and the old table stays in force.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.appkeys import KEYS, OPTIONS, SCRUBBER, STORE, TABLE
from gateway.config import ConfigError, load_config
from gateway.core.table import RoutingTable
from gateway.scrub import config_secrets

log = logging.getLogger("gateway.ops.watch")


def _stamp(path: str) -> tuple[int, int]:
    """What changes when the file is edited: mtime and size (size catches a coarse mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def reload_now(app: web.Application) -> bool:
    """Load, validate and swap in the config file; on any problem keep the running config."""
    path = app[OPTIONS].config_path
    if path is None:
        return False
    try:
        table = RoutingTable(load_config(path))
    except ConfigError as err:
        for problem in err.problems:
            log.error("config reload of %s refused, old config stays: %s", path, problem)
        return False
    except (UnicodeDecodeError, ValueError) as exc:
        log.error("config reload of %s refused, old config stays: (file) %s", path, type(exc).__name__)
        return False
    app[SCRUBBER].remember(config_secrets(table.config))   # before any request can use a new key
    app[TABLE].table = table   # one assignment: a request sees the old table or the new, never a mix
    log.info("config reloaded from %s: %d routes", path, len(table.routes))
    return True


async def _watch_config(app: web.Application, path: str) -> None:
    options = app[OPTIONS]
    seen = _stamp(path)
    while True:
        await asyncio.sleep(options.config_poll_interval)
        current = _stamp(path)
        if current != seen:
            seen = current
            try:
                reload_now(app)
            except Exception as exc:   # a bug of ours must not stop the watching: keep the old config
                log.error("config reload of %s failed, old config stays: %s", path, type(exc).__name__)


async def _watch_keys(app: web.Application) -> None:
    keys, store, interval = app[KEYS], app[STORE], app[OPTIONS].key_poll_interval
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await keys.refresh(store)
        except Exception as exc:  # database errors: try again next tick, say so once
            if not failing:
                log.warning("key refresh failed, retrying every %gs: %s", interval, exc)
            failing = True
            continue
        if failing:
            log.warning("key refresh recovered")
            failing = False


async def watchers_ctx(app: web.Application) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(_watch_keys(app), name="key-watch")]
    hup = False
    config_path = app[OPTIONS].config_path
    if config_path is not None:
        tasks.append(asyncio.create_task(_watch_config(app, config_path), name="config-watch"))
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_now, app)
            hup = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass   # no SIGHUP here (Windows, or not the main thread): polling still reloads
    yield
    if hup:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
