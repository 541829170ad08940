"""The two middlewares every request passes: a request id, and errors turned into the envelope."""
from __future__ import annotations

import logging
import os

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.appkeys import ENVELOPE, REQUEST_ID, SCRUBBER
from gateway.errors import GatewayError, error_response

log = logging.getLogger("gateway.errors")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = os.urandom(16).hex()   # 32 random hex digits, as uuid4().hex gave, at a quarter of its cost
    request[REQUEST_ID] = request_id
    response = await handler(request)
    if not response.prepared:
        response.headers["x-request-id"] = request_id
    return response


_HTTP_CODES = {404: ("not_found", "invalid_request_error"), 405: ("method_not_allowed", "invalid_request_error"),
               413: ("request_too_large", "invalid_request_error")}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as err:
        return error_response(err, request.get(REQUEST_ID), request.app[SCRUBBER],
                              request.get(ENVELOPE, "openai"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, typ = _HTTP_CODES.get(exc.status, ("http_error", "invalid_request_error"))
        mapped = GatewayError(exc.reason or "request failed", status=exc.status, code=code, type=typ)
        return error_response(mapped, request.get(REQUEST_ID), request.app[SCRUBBER],
                              request.get(ENVELOPE, "openai"))
    except Exception as exc:  # a bug of ours: say so without a traceback or details
        log.error("internal error on %s %s: %s", request.method, request.path, type(exc).__name__,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        internal = GatewayError("The gateway hit an internal error; the request was not completed.",
                                status=500, type="api_error", code="internal_error")
        return error_response(internal, request.get(REQUEST_ID), request.app[SCRUBBER],
                              request.get(ENVELOPE, "openai"))
