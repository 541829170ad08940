"""create_app(): routes, middleware, and every object with a lifetime."""
from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.appkeys import (
    ACCESS_LOG,
    CLOCK,
    KEYS,
    LEDGER,
    LIMITER,
    METRICS,
    OPTIONS,
    ROUTER,
    SCRUBBER,
    STORE,
    TABLE,
    UPSTREAM,
    ServerOptions,
    TableHolder,
)
from gateway.clock import Clock
from gateway.config import Config
from gateway.core import count, stored
from gateway.core.endpoint import endpoint
from gateway.core.router import Router
from gateway.core.table import RoutingTable
from gateway.core.upstream import Upstream
from gateway.front import FRONTS
from gateway.keys import KeyRegistry
from gateway.limiter import ledger_facts, open_limiter
from gateway.middleware import error_middleware, request_id_middleware
from gateway.ops import admin, handlers, logs, ui
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import tracing_ctx
from gateway.ops.watch import watchers_ctx
from gateway.scrub import Scrubber, config_secrets
from gateway.store import open_store
from gateway.store.ledger import LedgerWriter, NullLedger


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = await open_store(app[OPTIONS].db_path)
    app[STORE] = store
    keys = KeyRegistry()
    await keys.load(store, app[CLOCK].now())
    app[KEYS] = keys
    ledger = LedgerWriter(store) if app[OPTIONS].ledger else NullLedger(store)
    ledger.start()
    app[LEDGER] = ledger
    yield
    await ledger.close()
    await store.close()


async def _limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    """`--limits` (ServerOptions.limiter_url) wins over settings.limiter; chosen once, at start."""
    settings = app[TABLE].table.settings
    url = app[OPTIONS].limiter_url or settings.limiter
    limiter = open_limiter(url, settings.limiter_fallback, app[CLOCK], ledger_facts(app[STORE], app[LEDGER].flush))
    await limiter.start()
    app[LIMITER] = limiter
    app[METRICS].watch_limiter(limiter)
    yield
    await limiter.close()


async def _flush_access_log(app: web.Application) -> None:
    app[ACCESS_LOG].flush()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    upstream = Upstream.create(app[CLOCK])
    app[UPSTREAM] = upstream
    yield
    await upstream.close()


def create_app(config: Config, options: ServerOptions, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[request_id_middleware, error_middleware], client_max_size=1024 ** 3)
    app[OPTIONS] = options
    app[CLOCK] = clock or Clock()
    app[TABLE] = TableHolder(RoutingTable(config))
    app[SCRUBBER] = Scrubber([*config_secrets(config), options.master_key])
    logs.scrub_with(app[SCRUBBER])
    app[ROUTER] = Router()
    app[METRICS] = Metrics(app[ROUTER], lambda: app.get(LEDGER), app[CLOCK])
    app[ACCESS_LOG] = logs.AccessLog()
    app.on_cleanup.append(_flush_access_log)
    app.cleanup_ctx.extend([tracing_ctx, _store_ctx, stored.memory_ctx, _limiter_ctx, _upstream_ctx, watchers_ctx])
    for front in FRONTS.values():
        app.router.add_post(front.path, endpoint(front))
    app.router.add_post(count.PATH, count.count_tokens)
    stored.add_routes(app)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    admin.add_routes(app)
    ui.add_routes(app)
    return app
