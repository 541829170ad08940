"""What each target is sent (`plan`), and the attempts across a route's targets until one answers."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from aiohttp import web

from gateway.appkeys import CLOCK, ROUTER, SCRUBBER
from gateway.core.exchange import Exchange
from gateway.core.table import RouteEntry, TargetEntry
from gateway.core.upstream import AttemptFailed
from gateway.dialects.base import Completion, EmbeddingDialect, NativeDialect, TargetView, UpstreamRequest
from gateway.errors import GatewayError, InvalidRequest, UpstreamFailed
from gateway.front.base import ClientRequest
from gateway.scrub import Scrubber

log = logging.getLogger("gateway.core.attempts")


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
    native: bool = False     # the client's own body, as its API has it (the dialect speaks that API)
    parse: Callable[[Any], Completion] | None = None   # how to read the answer; None: the dialect's parse_response


def plan(asked: ClientRequest, candidates: list[TargetEntry]) -> dict[TargetEntry, Plan]:
    """Each candidate's upstream request, after every dialect and `thinking` adjustment.

    Built before admission, so a reservation assumes exactly what a retry to any of
    these targets would send (a thinking budget raising `max_tokens`, say). A target
    whose dialect speaks the client's API gets the client's own body (`native`).
    """
    if asked.api == EMBEDDINGS:
        return _embedding_plans(asked, candidates)
    plans = {}
    for target in candidates:
        dialect = target.dialect
        native = asked.native is not None and dialect.native_api == asked.api
        sent, model = upstream_body(asked.native if native and asked.native is not None else asked.body,
                                    target, asked.thinking)
        try:
            if native:
                req = cast(NativeDialect, dialect).build_native(sent, _view(target, model), asked.stream,
                                                                asked.forward)
            else:
                req = dialect.build_request(sent, _view(target, model), asked.stream)
        except Exception as exc:  # validation missed a shape this dialect cannot take: still the client's request
            log.warning("dialect %s could not translate a request: %s", target.dialect.name, type(exc).__name__)
            raise InvalidRequest(f"The request cannot be translated for the provider of {target.model!r}: "
                                 "check the shapes of messages, tools and their parts.") from None
        plans[target] = Plan(model, req, dialect.output_cap(req.body), native)
    return plans


EMBEDDINGS = "embeddings"


def _embedding_plans(asked: ClientRequest, candidates: list[TargetEntry]) -> dict[TargetEntry, Plan]:
    """Only targets whose dialect embeds; their output is nothing, so the reservation is the input."""
    plans = {}
    for target in candidates:
        if not hasattr(target.dialect, "build_embeddings"):
            continue
        dialect = cast(EmbeddingDialect, target.dialect)
        req = dialect.build_embeddings(asked.native or asked.body, target.view)
        plans[target] = Plan(target.model, req, 0, True, dialect.parse_embeddings)
    if not plans:
        raise InvalidRequest("No target of this route serves embeddings.", param="model",
                             code="embeddings_not_supported")
    return plans


def worst_cost(plans: dict[TargetEntry, Plan], prompt: int) -> float:
    """The most the request can cost on any target a retry may reach: its prompt and its output bound."""
    return max(target.worst(prompt, p.output_cap or 0) for target, p in plans.items())


def client_error(failure: AttemptFailed, started: bool = False) -> GatewayError:
    """The one mapping from a failed attempt to what the client gets: an error answer, or (`started`:
    after the first chunk) the stream's one error event."""
    if failure.kind == "auth":
        return UpstreamFailed("The upstream provider refused the gateway's credentials.",
                              code="upstream_auth_failed")
    if failure.client_fault:   # as the upstream said (scrubbed as foreign): its status, message, type, code, param
        details = failure.details
        return GatewayError(failure.message, status=failure.status, type=details.get("type"),
                            code=details.get("code", "upstream_rejected"), param=details.get("param"), foreign=True)
    if failure.kind == "timeout":
        what = "stalled" if started else "timed out"
        return GatewayError(f"Upstream {what}: {failure.message}", status=504, type="api_error",
                            code="upstream_timeout", foreign=True)
    if failure.kind == "too_large":
        return UpstreamFailed(f"The upstream answer was too large: {failure.message}", code="upstream_too_large")
    if started:
        return UpstreamFailed(f"The upstream stream failed: {failure.message}", foreign=True)
    status = f" (last upstream status {failure.status})" if failure.status else ""
    error = UpstreamFailed(f"All upstream attempts failed{status}: {failure.message}", foreign=True)
    error.upstream_status = failure.status
    return error


def _next(order: list[TargetEntry], after: int, refused: set[str]) -> int | None:
    """Index of the next target after `after` (wrapping) whose provider did not refuse our credentials."""
    for step in range(1, len(order) + 1):
        i = (after + step) % len(order)
        if order[i].provider not in refused:
            return i
    return None


class Attempts:
    """The attempts of one request across its route's targets, in the order its strategy gave.

    The caller asks `next()` for a target and its prepared request, tries it, and says
    `succeeded()` or `failed(exc)`; `failed` waits out the backoff (the upstream's
    Retry-After when the next attempt goes back to the same provider) or, when no
    attempt is left, raises the client's error. A provider that refused our
    credentials is not asked again in this request; another provider may still answer.
    """

    __slots__ = ("_ex", "_order", "_plans", "_retries", "_router", "_clock", "_scrubber", "_refused",
                 "_index", "_target", "_began")

    def __init__(self, app: web.Application, ex: Exchange, entry: RouteEntry, order: list[TargetEntry],
                 plans: dict[TargetEntry, Plan]):
        self._ex, self._order, self._plans, self._retries = ex, order, plans, entry.route.retries
        self._router, self._clock, self._scrubber = app[ROUTER], app[CLOCK], app[SCRUBBER]
        self._refused: set[str] = set()
        self._index = 0
        self._target = order[0]
        self._began = 0.0

    def next(self) -> tuple[TargetEntry, Plan]:
        target = self._target = self._order[self._index]
        chosen = self._plans[target]
        self._ex.use_target(target, chosen.model)
        if self._ex.trace is not None:   # the attempt's span; its traceparent joins the request's headers
            chosen = self._ex.trace.attempt(target, chosen)
        self._began = self._clock.monotonic()
        return target, chosen

    def succeeded(self) -> None:
        self._router.succeeded(self._target, self._clock.monotonic() - self._began)

    async def failed(self, exc: AttemptFailed) -> None:
        """Record the failure; return when the next attempt may start, or raise the client's error."""
        failure, target = _scrubbed(exc, self._scrubber), self._target
        if self._ex.trace is not None:
            self._ex.trace.failed(failure.kind, failure.status)
        if failure.kind == "auth":
            log.error("upstream %s refused the gateway's credentials (HTTP %s); check its api_key",
                      target.provider, failure.status)
            self._refused.add(target.provider)
        if failure.client_fault:
            self._router.refused_client(target)
        else:
            self._router.failed(target, self._clock.now())
        n = self._ex.attempts - 1
        index = _next(self._order, self._index, self._refused)
        if index is None or n >= self._retries or not (failure.retryable or failure.kind == "auth"):
            raise client_error(failure)
        self._index = index
        if failure.retryable:
            same = self._order[index].provider == target.provider
            await self._clock.sleep(self._router.backoff(n, failure.retry_after if same else None))


def _scrubbed(failure: AttemptFailed, scrubber: Scrubber) -> AttemptFailed:
    """Whatever an upstream wrote loses the secrets we hold here, where every attempt's failure passes."""
    failure.message = scrubber.text(failure.message)
    failure.details = {k: v for k, v in failure.details.items() if scrubber.text(v) == v}
    return failure


def _view(target: TargetEntry, model: str) -> TargetView:
    return target.view if model == target.view.model else replace(target.view, model=model)
