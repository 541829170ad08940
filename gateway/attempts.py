"""One request's journey (`Exchange`) and the loop of attempts across a route's targets."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from gateway.appkeys import CLOCK, ROUTER, SCRUBBER
from gateway.dialects.base import TargetView, UpstreamRequest
from gateway.errors import GatewayError, InvalidRequest, UpstreamFailed
from gateway.keys import KeyState
from gateway.limits import Admission
from gateway.routing import RouteEntry, TargetEntry
from gateway.scrub import Scrubber
from gateway.upstream import AttemptFailed

log = logging.getLogger("gateway.attempts")


class Exchange:
    """One request's journey: what the ledger row and the response headers need."""

    __slots__ = ("request_id", "key", "row", "admission", "headers", "started", "attempts", "target")

    def __init__(self, request_id: str, key: KeyState, created_at: str, started: float):
        self.request_id = request_id
        self.key = key
        self.started = started
        self.attempts = 0
        self.target: TargetEntry | None = None
        self.admission: Admission | None = None
        self.headers: dict[str, str] = {"x-request-id": request_id}
        self.row: dict[str, Any] = {"request_id": request_id, "key_id": key.row.id, "created_at": created_at,
                                    "stream": 0, "status": "rejected", "prompt_tokens": 0, "completion_tokens": 0,
                                    "total_tokens": 0, "cost_usd": 0.0, "attempts": 0}

    def use_target(self, target: TargetEntry, model: str) -> None:
        self.target = target
        self.headers["x-gateway-provider"] = target.provider
        self.headers["x-gateway-model"] = model
        self.row["provider"] = target.provider
        self.row["upstream_model"] = model

    def book(self, prompt: int, completion: int, reasoning: int | None, estimated: bool) -> None:
        row = self.row
        row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"] = prompt, completion, reasoning
        row["total_tokens"] = prompt + completion
        row["cost_usd"] = self.target.cost(prompt, completion) if self.target else 0.0
        row["usage_source"] = "estimated" if estimated else "upstream"


def upstream_body(body: dict[str, Any], target: TargetEntry, thinking: bool) -> tuple[dict[str, Any], str]:
    """The client's body adapted to one target's thinking form; returns (body, upstream model)."""
    form = target.target.thinking
    if "thinking" not in body:
        return body, target.model
    body = dict(body)
    if form is None or not form.native:
        del body["thinking"]   # a native target gets it as sent, `disabled` too: some think by default
    if thinking and form is not None:
        if form.model:
            return body, form.model
        if form.params:
            body.update(form.params)
    return body, target.model


@dataclass(frozen=True, slots=True)
class Plan:
    """What one target is sent for this request, built once: attempts send it, the budget reserves for it."""

    model: str
    request: UpstreamRequest
    output_cap: int | None   # the dialect's bound on billed output in `request`; None: it sets none


def plan(body: dict[str, Any], candidates: list[TargetEntry], thinking: bool,
         stream: bool) -> dict[TargetEntry, Plan]:
    """Each candidate's upstream request, after every dialect and `thinking` adjustment.

    Built before admission, so a reservation assumes exactly what a retry to any of
    these targets would send (a thinking budget raising `max_tokens`, say).
    """
    plans = {}
    for target in candidates:
        sent, model = upstream_body(body, target, thinking)
        try:
            req = target.dialect.build_request(sent, _view(target, model), stream)
        except Exception as exc:  # validation missed a shape this dialect cannot take: still the client's request
            log.warning("dialect %s could not translate a request: %s", target.dialect.name, type(exc).__name__)
            raise InvalidRequest(f"The request cannot be translated for the provider of {target.model!r}: "
                                 "check the shapes of messages, tools and their parts.") from None
        plans[target] = Plan(model, req, target.dialect.output_cap(req.body))
    return plans


def worst_cost(plans: dict[TargetEntry, Plan], prompt: int) -> float:
    """The most the request can cost on any target a retry may reach: its prompt and its output bound."""
    return max(target.cost(prompt, p.output_cap or 0) for target, p in plans.items())


def final_error(failure: AttemptFailed) -> GatewayError:
    if failure.kind == "auth":
        return UpstreamFailed("The upstream provider refused the gateway's credentials.",
                              code="upstream_auth_failed")
    if failure.client_fault:   # as the upstream said (scrubbed as foreign): its status, message, type, code, param
        details = failure.details
        return GatewayError(failure.message, status=failure.status, type=details.get("type"),
                            code=details.get("code", "upstream_rejected"), param=details.get("param"), foreign=True)
    if failure.kind == "timeout":
        return GatewayError(f"Upstream timed out: {failure.message}", status=504, type="api_error",
                            code="upstream_timeout", foreign=True)
    if failure.kind == "too_large":
        return UpstreamFailed(f"The upstream answer was too large: {failure.message}", code="upstream_too_large")
    status = f" (last upstream status {failure.status})" if failure.status else ""
    return UpstreamFailed(f"All upstream attempts failed{status}: {failure.message}", foreign=True)


def _next(order: list[TargetEntry], after: int, refused: set[str]) -> int | None:
    """Index of the next target after `after` (wrapping) whose provider did not refuse our credentials."""
    for step in range(1, len(order) + 1):
        i = (after + step) % len(order)
        if order[i].provider not in refused:
            return i
    return None


def _note(router, target: TargetEntry, failure: AttemptFailed, now: float) -> None:
    if failure.kind == "auth":
        log.error("upstream %s refused the gateway's credentials (HTTP %s); check its api_key",
                  target.provider, failure.status)
    if failure.client_fault:
        router.refused_client(target)
    else:
        router.failed(target, now)


async def attempt_loop(request: web.Request, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                       plans: dict[TargetEntry, Plan], attempt):
    """Try targets in order (wrapping around) until one works or retries run out.

    A retryable failure waits (backoff; the upstream's Retry-After when the next
    attempt goes back to the same provider) and moves to the next target. A
    provider that refused our credentials is not asked again in this request;
    another provider may still answer.
    """
    app = request.app
    router, clock, scrubber = app[ROUTER], app[CLOCK], app[SCRUBBER]
    retries = entry.route.retries
    refused: set[str] = set()
    index: int | None = 0
    for n in range(retries + 1):
        target = order[index]
        chosen = plans[target]
        ex.use_target(target, chosen.model)
        ex.attempts = n + 1
        ex.headers["x-gateway-attempts"] = str(n + 1)
        began = clock.monotonic()
        try:
            return await attempt(target, chosen.request, began)
        except AttemptFailed as exc:
            failure = _scrubbed(exc, scrubber)
            _note(router, target, exc, clock.now())
            if exc.kind == "auth":
                refused.add(target.provider)
            index = _next(order, index, refused)
            if index is None or n == retries or not (exc.retryable or exc.kind == "auth"):
                break
            if exc.retryable:
                same = order[index].provider == target.provider
                await asyncio.sleep(router.backoff(n, exc.retry_after if same else None))
    raise final_error(failure)


def _scrubbed(failure: AttemptFailed, scrubber: Scrubber) -> AttemptFailed:
    """Whatever an upstream wrote loses the secrets we hold here, where every attempt's failure passes."""
    failure.message = scrubber.text(failure.message)
    failure.details = {k: v for k, v in failure.details.items() if scrubber.text(v) == v}
    return failure


def _view(target: TargetEntry, model: str) -> TargetView:
    return target.view if model == target.view.model else replace(target.view, model=model)
