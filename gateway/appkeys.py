"""Every shared object of the app, under a typed key (one module, so no import cycles)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.clock import Clock
from gateway.core.router import Router
from gateway.core.table import RoutingTable
from gateway.core.upstream import Upstream
from gateway.keys import KeyRegistry
from gateway.limiter import Limiter
from gateway.ops.logs import AccessLog
from gateway.ops.metrics import Metrics
from gateway.scrub import Scrubber
from gateway.store import Store, redact_url
from gateway.store.ledger import LedgerWriter
from gateway.store.responses import ResponseMemory

if TYPE_CHECKING:
    from gateway.ops.otel import Tracing


@dataclass
class ServerOptions:
    config_path: str | None
    db_path: str
    master_key: str | None = None
    key_poll_interval: float = 1.0
    config_poll_interval: float = 1.0
    keepalive_interval: float = 15.0   # seconds of upstream silence between `: keep-alive` comments
    body_timeout: float = 30.0         # a client that has not sent its whole body by then is dropped
    ledger: bool = True           # False only for the benchmark's ledger-off run
    limiter_url: str | None = None   # `memory` or `redis://...` (--limits, GATEWAY_LIMITS); None: settings.limiter
    prune_interval: float = 3600.0   # seconds between deletions of stored responses past settings.responses_days

    def __repr__(self) -> str:  # never show the master key
        return f"ServerOptions(config_path={self.config_path!r}, db_path={redact_url(self.db_path)!r})"


class TableHolder:
    """The current routing table; replaced whole on reload."""

    def __init__(self, table: RoutingTable):
        self.table = table


OPTIONS = web.AppKey("options", ServerOptions)
CLOCK = web.AppKey("clock", Clock)
TABLE = web.AppKey("table", TableHolder)
STORE = web.AppKey("store", Store)
KEYS = web.AppKey("keys", KeyRegistry)
LEDGER = web.AppKey("ledger", LedgerWriter)
ROUTER = web.AppKey("router", Router)
UPSTREAM = web.AppKey("upstream", Upstream)
METRICS = web.AppKey("metrics", Metrics)
LIMITER = web.AppKey("limiter", Limiter)
SCRUBBER = web.AppKey("scrubber", Scrubber)
TRACING: web.AppKey[Tracing | None] = web.AppKey("tracing")   # None: tracing off (gateway.ops.tracing)
RESPONSES = web.AppKey("responses", ResponseMemory)   # stored responses (SPEC 10.2)

REQUEST_ID = web.RequestKey("request_id", str)
ENVELOPE = web.RequestKey("envelope", str)   # the error envelope of the API the client speaks
ACCESS_LOG = web.AppKey("access_log", AccessLog)   # one line per model request, written in batches
