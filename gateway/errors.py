"""Typed errors and the one mapping to the OpenAI error envelope.

Handlers raise `GatewayError`s; `gateway.middleware` turns them (and anything
unexpected) into answers through `error_response`. Nothing else builds an error body.
"""
from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9_\-\.=]{6,}|sk-ant-[A-Za-z0-9_\-]{6,})")


def redact(text: str) -> str:
    """Hide anything shaped like a key, e.g. an upstream error echoing ours."""
    return _SECRET.sub("[redacted]", text)


class GatewayError(Exception):
    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 status: int | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.param = param
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": redact(self.message), "type": self.type,
                          "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    code = "invalid_value"


class AuthError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    code = "model_not_found"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class UpstreamFailed(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_error"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


def error_response(err: GatewayError, request_id: str | None = None) -> web.Response:
    headers = dict(err.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return web.Response(status=err.status, body=orjson.dumps(err.envelope()),
                        content_type="application/json", headers=headers)


def error_event(err: GatewayError) -> bytes:
    """The one final SSE event of a stream that failed after it started."""
    return b"data: " + orjson.dumps(err.envelope()) + b"\n\n"
