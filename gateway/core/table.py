"""The loaded config made ready for the request path: names resolved, dialects bound.

Built once per (re)load and swapped whole, so a request keeps the table it
started with while a reload happens.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway import dialects
from gateway.config import Config, Price, Route, Target
from gateway.dialects.base import Dialect, TargetView
from gateway.prices import target_price


@dataclass(frozen=True, eq=False)
class TargetEntry:
    provider: str
    model: str
    weight: float
    price: Price
    target: Target
    dialect: Dialect
    view: TargetView
    delay: float                 # the mock's artificial per-chunk latency, seconds

    priced_by: str               # "config" (its own `price`), "table" (gateway/prices.json) or "none"

    def cost(self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> float:
        return self.price.cost(prompt, completion, cached, cache_write)

    def worst(self, prompt: int, completion: int) -> float:
        """The most this target can bill for `prompt` tokens in and `completion` out (budget reservations)."""
        return self.price.worst(prompt, completion)


@dataclass(frozen=True, eq=False)
class RouteEntry:
    name: str
    route: Route
    targets: list[TargetEntry]

    def candidates(self, thinking: bool) -> list[TargetEntry]:
        return [t for t in self.targets if t.target.thinking is not None] if thinking else self.targets


class RoutingTable:
    def __init__(self, config: Config):
        self.config = config
        self.settings = config.settings
        self.routes: dict[str, RouteEntry] = {}
        for name, route in config.routes.items():
            entries = []
            for target in route.targets:
                provider = config.providers[target.provider]
                thinking = target.thinking
                view = TargetView(model=target.model, base_url=provider.base_url, api_key=provider.api_key,
                                  headers=dict(provider.headers),
                                  thinking="native" if thinking is not None and thinking.native else None)
                price, priced_by = target_price(target)
                entries.append(TargetEntry(target.provider, target.model, target.weight, price, target,
                                           dialects.get(provider.dialect), view, provider.chunk_delay_ms / 1000,
                                           priced_by))
            self.routes[name] = RouteEntry(name, route, entries)
        self.names = {alias: self.routes[canonical] for alias, canonical in config.route_names().items()}

    def resolve(self, model: str) -> RouteEntry | None:
        return self.names.get(model)
