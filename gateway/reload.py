"""Hot reload of routes.yaml (mtime polling and SIGHUP) and pickup of key changes.

A changed file is validated whole and swapped in between requests; a broken
edit is logged with its YAML paths and the old table stays in force.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web

from gateway.appkeys import KEYS, OPTIONS, STORE, TABLE
from gateway.config import ConfigError, load_config
from gateway.routing import RoutingTable

log = logging.getLogger("gateway.reload")


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def reload_now(app: web.Application) -> bool:
    path = app[OPTIONS].config_path
    if path is None:
        return False
    try:
        table = RoutingTable(load_config(path))
    except ConfigError as err:
        for problem in err.problems:
            log.error("config reload refused, old config stays: %s", problem)
        return False
    app[TABLE].table = table
    log.info("config reloaded from %s: %d routes", path, len(table.routes))
    return True


async def _watch_config(app: web.Application) -> None:
    options = app[OPTIONS]
    seen = _mtime(options.config_path)
    while True:
        await asyncio.sleep(options.config_poll_interval)
        current = _mtime(options.config_path)
        if current != seen:
            seen = current
            reload_now(app)


async def _watch_keys(app: web.Application) -> None:
    keys, store, interval = app[KEYS], app[STORE], app[OPTIONS].key_poll_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await keys.refresh(store)
        except Exception as exc:  # sqlite errors: try again next tick
            log.warning("key refresh failed: %s", exc)


async def watchers_ctx(app: web.Application):
    tasks = [asyncio.create_task(_watch_keys(app), name="key-watch")]
    if app[OPTIONS].config_path is not None:
        tasks.append(asyncio.create_task(_watch_config(app), name="config-watch"))
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_now, app)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
