"""Typed errors and the one mapping to each client API's error envelope.

Handlers raise `GatewayError`s; `gateway.middleware` turns them (and anything
unexpected) into answers through `error_response`, in the envelope of the API
the client speaks (`ENVELOPES`); a stream's encoder frames the same body as its
final event. Nothing else builds an error body.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.scrub import Scrubber

if TYPE_CHECKING:
    from aiohttp import web

_NO_SECRETS = Scrubber()


class GatewayError(Exception):
    """An answer the gateway gives on purpose.

    `foreign` marks an error whose fields were copied from an upstream: those pass
    the whole scrubber (key shapes too) and keep `type`/`code`/`param` only when
    they look like codes. The gateway's own messages only lose held secret values,
    so a hint such as "send 'Authorization: Bearer sk-...'" reads as written.
    """

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 status: int | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None, foreign: bool = False):
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
        self.foreign = foreign
        self.upstream_status: int | None = None   # the last upstream's status, when every attempt failed

    def envelope(self, scrubber: Scrubber = _NO_SECRETS) -> dict[str, Any]:
        if not self.foreign:
            return {"error": {"message": scrubber.values(self.message), "type": self.type,
                              "param": scrubber.values(self.param) if self.param else None, "code": self.code}}
        client = self.status < 500
        return {"error": {"message": scrubber.text(self.message),
                          "type": scrubber.code(self.type, "invalid_request_error" if client else "api_error"),
                          "param": scrubber.param(self.param), "code": self.ledger_code(scrubber)}}

    def ledger_code(self, scrubber: Scrubber = _NO_SECRETS) -> str | None:
        """The code the ledger and the access log keep: short (`[a-z0-9_.-]{1,64}`), and never a secret."""
        if self.code is None and not self.foreign:
            return None
        return scrubber.code(self.code, "upstream_rejected" if self.status < 500 else "upstream_error")


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


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    504: "timeout_error", 529: "overloaded_error"}


def _openai(err: GatewayError, scrubber: Scrubber) -> tuple[int, dict[str, Any]]:
    return err.status, err.envelope(scrubber)


def _anthropic(err: GatewayError, scrubber: Scrubber) -> tuple[int, dict[str, Any]]:
    """Anthropic's envelope: the type follows the status; an upstream's 529 (overloaded) stays 529."""
    status = 529 if err.status >= 500 and err.upstream_status == 529 else err.status
    kind = _ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return status, {"type": "error", "error": {"type": kind, "message": err.envelope(scrubber)["error"]["message"]}}


ENVELOPES = {"openai": _openai, "anthropic": _anthropic}


def error_body(err: GatewayError, scrubber: Scrubber = _NO_SECRETS,
               envelope: str = "openai") -> tuple[int, dict[str, Any]]:
    """The status and body a client of this envelope gets for `err`."""
    return ENVELOPES[envelope](err, scrubber)


def error_response(err: GatewayError, request_id: str | None = None,
                   scrubber: Scrubber = _NO_SECRETS, envelope: str = "openai") -> web.Response:
    headers = dict(err.headers)
    if request_id:
        headers["x-request-id"] = request_id
    status, body = error_body(err, scrubber, envelope)
    import orjson
    from aiohttp import web  # here, not at the top: the CLI's database commands load no HTTP stack

    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
