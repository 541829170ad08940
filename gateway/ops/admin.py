"""The admin API under /admin (SPEC section 8), guarded by GATEWAY_MASTER_KEY."""
from __future__ import annotations

import hmac
from typing import Any

import orjson
from aiohttp import web

from gateway.appkeys import CLOCK, KEYS, LEDGER, LIMITER, OPTIONS, ROUTER, STORE, TABLE
from gateway.errors import AuthError, GatewayError, InvalidRequest
from gateway.keys import (
    KeyLimits,
    KeyState,
    bearer_token,
    check_models,
    create_key,
    credential_bytes,
    revoke_key,
    update_key,
)
from gateway.store import KeyRow, is_date

_FIELDS = {"name", "rpm", "tpm", "max_budget", "budget_period", "models"}
_SYNONYMS = {"rpm_limit": "rpm", "tpm_limit": "tpm"}   # the key object's own names work too


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _guard(request: web.Request) -> None:
    master = request.app[OPTIONS].master_key
    if not master:
        raise GatewayError("Not found.", status=404, code="not_found")
    given = request.headers.get("Authorization", "")
    token = bearer_token(given)
    if not hmac.compare_digest(credential_bytes(token), credential_bytes(master)):
        raise AuthError("The admin API needs 'Authorization: Bearer <master key>'.")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    for synonym, name in _SYNONYMS.items():
        if synonym in body:
            if name in body:
                raise InvalidRequest(f"Give '{name}' or '{synonym}', not both.", param=synonym)
            body[name] = body.pop(synonym)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}.", param=unknown[0], code="unsupported_parameter")
    return body


def _limits(app: web.Application, body: dict[str, Any]) -> KeyLimits:
    """The body's limits; `models` must name routes (or aliases) of the loaded config."""
    limits = KeyLimits(rpm=body.get("rpm"), tpm=body.get("tpm"), budget=body.get("max_budget"),
                       period=body.get("budget_period"), models=body.get("models"), models_given="models" in body)
    check_models(limits, app[TABLE].table.config.route_names())
    return limits


async def _report(app: web.Application, state: KeyState) -> dict[str, Any]:
    """A key object with its usage as the limiter counts it (in Redis when limits are shared)."""
    return (await app[LIMITER].reports([state], app[CLOCK].now()))[0]


def _key_or_404(request: web.Request) -> KeyState:
    state = request.app[KEYS].by_id.get(request.match_info["key_id"])
    if state is None:
        raise GatewayError("No key with that id.", status=404, code="key_not_found")
    return state


def _still_there(row: KeyRow | None) -> KeyRow:
    """The store's row after a change; None when the key left the database since the registry loaded it."""
    if row is None:
        raise GatewayError("No key with that id.", status=404, code="key_not_found")
    return row


async def create(request: web.Request) -> web.Response:
    _guard(request)
    body = await _body(request)
    app = request.app
    row, secret = await create_key(app[STORE], body.get("name"), _limits(app, body), app[TABLE].table.settings.limits,
                                   app[CLOCK].now())
    state = app[KEYS].put(row)
    return _json({**state.report(app[CLOCK].now()), "key": secret}, status=201)   # a new key has no usage


async def list_keys(request: web.Request) -> web.Response:
    _guard(request)
    app = request.app
    data = await app[LIMITER].reports(list(app[KEYS].by_id.values()), app[CLOCK].now())
    return _json({"object": "list", "data": data})


async def show(request: web.Request) -> web.Response:
    _guard(request)
    return _json(await _report(request.app, _key_or_404(request)))


async def patch(request: web.Request) -> web.Response:
    _guard(request)
    state = _key_or_404(request)
    body = await _body(request)
    app = request.app
    if "name" in body:
        raise InvalidRequest("A key's name cannot be changed.", param="name")
    row = await update_key(app[STORE], state.row.id, _limits(app, body), app[TABLE].table.settings.limits,
                           app[CLOCK].now())
    return _json(await _report(app, app[KEYS].put(_still_there(row))))


async def revoke(request: web.Request) -> web.Response:
    _guard(request)
    state = _key_or_404(request)
    app = request.app
    row = await revoke_key(app[STORE], state.row.id, app[CLOCK].now())
    return _json(await _report(app, app[KEYS].put(_still_there(row))))


async def spend(request: web.Request) -> web.Response:
    _guard(request)
    by = request.query.get("by", "key")
    since = request.query.get("since")
    if by not in ("key", "model", "day"):
        raise InvalidRequest("'by' must be key, model or day.", param="by")
    if since is not None and not is_date(since):
        raise InvalidRequest("'since' must be a date, YYYY-MM-DD.", param="since")
    await request.app[LEDGER].flush()
    rows = await request.app[STORE].spend(by, since)
    return _json({"object": "list", "data": rows})


async def routes(request: web.Request) -> web.Response:
    """The loaded routes with each target's live health, for the dashboard."""
    _guard(request)
    app = request.app
    health = app[ROUTER].snapshot(app[CLOCK].now())
    data = []
    for name, entry in app[TABLE].table.routes.items():
        route = entry.route
        targets = []
        for t in entry.targets:
            h = health.get((t.provider, t.model))
            cooling = h is not None and h.cooling_for > 0
            targets.append({"provider": t.provider, "model": t.model, "weight": t.weight,
                            "price": {"input": t.price.input, "output": t.price.output},
                            "thinking": t.target.thinking is not None,
                            "latency_ms": round(h.latency * 1000, 3) if h and h.latency is not None else None,
                            "requests": h.requests if h else 0, "errors": h.errors if h else 0,
                            "failures_in_a_row": h.failures if h else 0, "cooling": cooling,
                            "cooling_seconds": round(h.cooling_for, 1) if h and cooling else 0})
        data.append({"name": name, "aliases": route.aliases, "strategy": route.strategy, "retries": route.retries,
                     "timeout": route.timeout, "targets": targets})
    return _json({"object": "list", "data": data})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/routes", routes)
    app.router.add_post("/admin/keys", create)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_get("/admin/keys/{key_id}", show)
    app.router.add_patch("/admin/keys/{key_id}", patch)
    app.router.add_delete("/admin/keys/{key_id}", revoke)
    app.router.add_get("/admin/spend", spend)
