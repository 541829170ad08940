"""`POST /v1/messages/count_tokens`: how many input tokens a Messages request holds, never booked.

An Anthropic target is asked (its count is the one it bills); any other route,
or an Anthropic target that does not answer, gets the gateway's own estimate,
the same one TPM limits and budget reservations use.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, cast

from aiohttp import web

from gateway.appkeys import ENVELOPE, KEYS, OPTIONS, TABLE, UPSTREAM
from gateway.core.table import TargetEntry
from gateway.core.upstream import AttemptFailed
from gateway.dialects.base import NativeDialect
from gateway.errors import NotFound, PermissionDenied
from gateway.front import chat_params, messages, messages_params
from gateway.front.body import credential, read_body
from gateway.front.messages_decode import to_chat
from gateway.tokens import estimate_prompt

log = logging.getLogger("gateway.core.count")
PATH = messages.path + "/count_tokens"


async def count_tokens(request: web.Request) -> web.Response:
    app = request.app
    request[ENVELOPE] = messages.envelope
    key = app[KEYS].authenticate(credential(request))
    table = app[TABLE].table
    body = await read_body(request, table.settings.max_body_bytes, app[OPTIONS].body_timeout)
    name = chat_params.model_name(body)
    entry = table.resolve(name)
    if entry is None:
        raise NotFound(f"The model {name!r} does not exist on this gateway.", param="model")
    if not key.allows(entry.name):
        raise PermissionDenied(f"This key may not use the model {entry.name!r}.", param="model")
    messages_params.validate(body, count_only=True)
    neutral, unseen = to_chat(body)
    count = estimate_prompt(neutral) + unseen
    targets = entry.candidates(False)
    target = targets[0] if targets else None
    if target is not None and target.dialect.native_api == messages.name:
        counted = await _upstream_count(request, target, body, entry.route.timeout)
        count = counted if counted is not None else count
    return web.json_response({"input_tokens": count})


async def _upstream_count(request: web.Request, target: TargetEntry, body: dict[str, Any],
                         timeout: float) -> int | None:
    sent = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
    forward = {h: request.headers[h] for h in messages.FORWARDED if h in request.headers}
    req = cast(NativeDialect, target.dialect).build_native(sent, target.view, False, forward)
    req = replace(req, url=req.url + "/count_tokens")
    app = request.app
    try:
        data = await app[UPSTREAM].json(target, req, timeout, limit=app[TABLE].table.settings.max_upstream_bytes)
    except AttemptFailed as exc:
        log.warning("token count from %s failed (%s): answering the estimate", target.provider, exc.kind)
        return None
    value = data.get("input_tokens") if isinstance(data, dict) else None
    return value if value.__class__ is int and 0 <= value < 2 ** 31 else None
