"""One request's journey and its outcome.

`Exchange` is the only writer of a ledger row's outcome (status, http_status,
error_code, ttft, usage and cost): handlers and the relay say what happened
through its transitions, so the rules of SPEC section 7 (`rejected` before
admission, `error` after it, `cancelled` when the client left) live here once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.core.table import TargetEntry
from gateway.dialects.base import Usage
from gateway.errors import GatewayError
from gateway.keys import KeyState
from gateway.limiter import Ticket
from gateway.scrub import Scrubber

if TYPE_CHECKING:
    from gateway.ops.otel import Trace


class Exchange:
    __slots__ = ("request_id", "key", "admission", "headers", "started", "attempts", "target", "endpoint", "trace",
                 "_row")

    def __init__(self, request_id: str, key: KeyState, created_at: str, started: float):
        self.request_id = request_id
        self.key = key
        self.started = started            # the Clock's monotonic time when the request arrived
        self.attempts = 0
        self.endpoint = "chat.completions"   # the ledger's `endpoint`: which client API was spoken
        self.target: TargetEntry | None = None
        self.trace: Trace | None = None   # the request's spans, while tracing is on (gateway.ops.otel)
        self.admission: Ticket | None = None
        self.headers: dict[str, str] = {"x-request-id": request_id}
        self._row: dict[str, Any] = {"request_id": request_id, "key_id": key.row.id, "created_at": created_at,
                                     "stream": 0, "status": "rejected", "prompt_tokens": 0, "completion_tokens": 0,
                                     "total_tokens": 0, "cost_usd": 0.0, "attempts": 0}

    # -- what was asked ----------------------------------------------------------------------------
    def routed(self, route: str) -> None:
        self._row["route"] = route

    def streaming(self, stream: bool) -> None:
        self._row["stream"] = int(stream)

    def admitted(self, admission: Ticket) -> None:
        self.admission = admission
        self.headers.update(admission.headers)

    def use_target(self, target: TargetEntry, model: str) -> None:
        """Attempt number `attempts + 1` goes to `target` as `model`."""
        self.target = target
        self.attempts += 1
        self.headers["x-gateway-provider"] = target.provider
        self.headers["x-gateway-model"] = model
        self.headers["x-gateway-attempts"] = str(self.attempts)
        self._row["provider"] = target.provider
        self._row["upstream_model"] = model

    # -- what happened -----------------------------------------------------------------------------
    def opened(self) -> None:
        """The 200 headers of a stream went out: whatever follows, the client saw 200."""
        self._row["http_status"] = 200

    def first_byte(self, now: float) -> None:
        self._row["ttft_ms"] = round((now - self.started) * 1000, 3)

    def answered(self, now: float | None = None) -> None:
        """The whole answer reached the client (`now`: when its first byte did, if not said before)."""
        self._row["status"], self._row["http_status"] = "ok", 200
        if now is not None:
            self.first_byte(now)

    def refused(self, err: GatewayError, scrubber: Scrubber) -> None:
        """An error answer instead of the model's: `rejected` before admission, `error` after it."""
        row = self._row
        row["http_status"], row["error_code"] = err.status, err.ledger_code(scrubber)
        if row["status"] != "ok":
            row["status"] = "error" if self.admission is not None else "rejected"

    def broke(self, err: GatewayError, scrubber: Scrubber) -> None:
        """A stream whose 200 went out ended with an error event."""
        self._row["status"], self._row["error_code"] = "error", err.ledger_code(scrubber)

    def cancelled(self, http_status: int | None = None) -> None:
        self._row["status"] = "cancelled"
        if http_status is not None:
            self._row["http_status"] = http_status

    def crashed(self) -> None:
        """A bug of ours: the middleware answers 500, and the row says so."""
        self._row["status"] = "error" if self.admission is not None else "rejected"
        self._row["http_status"], self._row["error_code"] = 500, "internal_error"

    def book(self, usage: Usage, estimated: bool) -> None:
        row = self._row
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        row["prompt_tokens"], row["completion_tokens"] = prompt, completion
        row["reasoning_tokens"] = usage.reasoning_tokens
        row["total_tokens"] = prompt + completion
        cached, written = usage.cached_tokens or 0, usage.cache_write_tokens or 0
        row["cached_tokens"], row["cache_write_tokens"] = cached, written
        row["cost_usd"] = self.target.cost(prompt, completion, cached, written) if self.target else 0.0
        row["usage_source"] = "estimated" if estimated else "upstream"

    def finished(self, now: float) -> dict[str, Any]:
        """The ledger row, once the request is over (`now`: the Clock's monotonic time)."""
        row = self._row
        row["attempts"] = self.attempts
        row["endpoint"] = self.endpoint
        row["latency_ms"] = round((now - self.started) * 1000, 3)
        return row
