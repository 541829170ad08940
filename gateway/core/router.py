"""Which target to try next: strategies, cooldown, and the retry backoff.

Target health is keyed by (provider, model), so it survives a config reload.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.config import Route
from gateway.core.table import TargetEntry

COOLDOWN_AFTER = 3          # failures in a row before a target is skipped
COOLDOWN_BASE = 5.0         # seconds, doubled for each further failure
COOLDOWN_MAX = 300.0
BACKOFF_BASE = 0.25
BACKOFF_MAX = 8.0
LATENCY_ALPHA = 0.3         # weight of the newest sample in the moving average


@dataclass(frozen=True, slots=True)
class HealthView:
    """One target's health as readers outside the router see it: a copy, at one instant."""

    provider: str
    model: str
    failures: int
    cooling_for: float               # seconds left of its cooldown; 0 when it is not cooling
    latency: float | None
    requests: int
    errors: int


@dataclass
class TargetHealth:
    failures: int = 0
    cooling_until: float = 0.0
    last_failure: float = 0.0
    latency: float | None = None     # moving average of time to first byte, seconds
    requests: int = 0
    errors: int = 0


class Router:
    def __init__(self, rng: random.Random | None = None):
        self.health: dict[tuple[str, str], TargetHealth] = {}
        self._turns: dict[str, int] = {}
        self.rng = rng or random.Random()

    def _health(self, target: TargetEntry) -> TargetHealth:
        key = (target.provider, target.model)
        health = self.health.get(key)
        if health is None:
            health = self.health[key] = TargetHealth()
        return health

    def order(self, name: str, route: Route, targets: list[TargetEntry], now: float) -> list[TargetEntry]:
        """Targets in the order the route's strategy gives, cooling ones left out unless all are cooling."""
        ranked = self._rank(name, route.strategy, targets)
        ready = [t for t in ranked if self._health(t).cooling_until <= now]
        if ready:
            return ready
        return sorted(ranked, key=lambda t: self._health(t).last_failure)

    def _rank(self, name: str, strategy: str, targets: list[TargetEntry]) -> list[TargetEntry]:
        if len(targets) == 1 or strategy == "fallback":
            return targets
        if strategy == "round_robin":
            turn = self._turns.get(name, 0)
            self._turns[name] = turn + 1
            start = turn % len(targets)
            return targets[start:] + targets[:start]
        if strategy == "weighted":
            pool, out = list(targets), []
            while pool:
                pick = self.rng.choices(range(len(pool)), weights=[t.weight for t in pool])[0]
                out.append(pool.pop(pick))
            return out
        if strategy == "least_latency":
            # untried targets first (latency unknown), so every target gets measured
            return sorted(targets, key=self._latency)
        if strategy == "cheapest":
            return sorted(targets, key=lambda t: t.price.input + t.price.output)
        return targets

    def _latency(self, target: TargetEntry) -> float:
        latency = self._health(target).latency
        return -1.0 if latency is None else latency

    def succeeded(self, target: TargetEntry, ttfb: float) -> None:
        health = self._health(target)
        health.failures = 0
        health.cooling_until = 0.0
        health.requests += 1
        health.latency = ttfb if health.latency is None else (
            LATENCY_ALPHA * ttfb + (1 - LATENCY_ALPHA) * health.latency)

    def refused_client(self, target: TargetEntry) -> None:
        """The target answered but rejected the client's request (a plain 4xx): counted, not held against it."""
        self._health(target).requests += 1

    def failed(self, target: TargetEntry, now: float) -> None:
        health = self._health(target)
        health.failures += 1
        health.requests += 1
        health.errors += 1
        health.last_failure = now
        if health.failures >= COOLDOWN_AFTER:
            extra = health.failures - COOLDOWN_AFTER
            health.cooling_until = now + min(COOLDOWN_BASE * (2 ** extra), COOLDOWN_MAX)

    def snapshot(self, now: float) -> dict[tuple[str, str], HealthView]:
        """Every known target's health by (provider, model), for the admin API and metrics."""
        return {key: HealthView(key[0], key[1], h.failures, max(h.cooling_until - now, 0.0), h.latency, h.requests,
                                h.errors)
                for key, h in list(self.health.items())}

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; an upstream Retry-After (capped) wins when longer."""
        delay = self.rng.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * (2 ** attempt)))
        return max(delay, retry_after or 0.0)
