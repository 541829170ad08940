"""Sliding-window RPM/TPM and period budgets, as pure logic over injected time.

Exact under concurrency because the request path is one event loop and no
`await` sits between a check and its booking (`admit` is synchronous). The
memory limiter books here; both limiters build their refusals and rate-limit
headers here, so they answer alike.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.errors import BudgetExceeded, RateLimited

SPAN = 60.0
DAY = 86400.0
_BOUND = 2**62


class Window:
    """Amounts booked in the trailing `SPAN` seconds, with a running total.

    Bookings live in two flat arrays (time, amount), not an object each: a key at 2,700 requests a second
    holds three bookings per request for a minute (the request, its prompt estimate, its real tokens), and
    as objects they took about 110 bytes apiece (50 MB at that rate); here 16. A booking's handle is its
    sequence number, which stays valid as the arrays' pruned head is cut off.
    """

    __slots__ = ("_times", "_amounts", "_head", "_base", "total")

    def __init__(self) -> None:
        self._times = array("d")
        self._amounts = array("q")
        self._head = 0      # index of the oldest booking still in the window
        self._base = 0      # sequence number of index 0
        self.total = 0

    def prune(self, now: float) -> None:
        times, amounts, edge = self._times, self._amounts, now - SPAN
        head, end = self._head, len(times)
        while head < end and times[head] <= edge:
            self.total -= amounts[head]
            head += 1
        if head > 1024 and head * 2 > end:   # cut the dead head off once it is most of the arrays
            del times[:head]
            del amounts[:head]
            self._base += head
            head = 0
        self._head = head

    def add(self, now: float, amount: int) -> int:
        """Book `amount` at `now`; the handle `cancel` takes. Past +-2**62 (tokens no model bills, from a
        hostile upstream's usage) it is clipped to fit the array's 64 bits, not refused mid-request."""
        if not -_BOUND <= amount <= _BOUND:
            amount = _BOUND if amount > 0 else -_BOUND
        self._times.append(now)
        self._amounts.append(amount)
        self.total += amount
        return self._base + len(self._times) - 1

    def cancel(self, handle: int) -> None:
        """Take a booking back, if it is still in the window."""
        i = handle - self._base
        if i >= self._head:
            self.total -= self._amounts[i]
            self._amounts[i] = 0

    def wait_for_room(self, now: float, need: int, limit: int) -> float:
        """Seconds until `need` more fits under `limit` (0 when it fits now)."""
        excess = self.total + need - limit
        if excess <= 0:
            return 0.0
        times, amounts = self._times, self._amounts
        for i in range(self._head, len(times)):
            excess -= amounts[i]
            if excess <= 0:
                return max(times[i] + SPAN - now, 0.0)
        return SPAN

    def reset_in(self, now: float) -> float:
        return max(self._times[self._head] + SPAN - now, 0.0) if self._head < len(self._times) else 0.0


def period_start(period: str, now: float) -> float:
    if period == "never":
        return 0.0
    dt = datetime.fromtimestamp(now, UTC)
    dt = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "monthly":
        dt = dt.replace(day=1)
    return dt.timestamp()


def rebuild_from(now: float) -> tuple[float, float, float]:
    """Where a rebuild from the ledger reads from: the window's start, the UTC day's and the UTC month's."""
    return now - SPAN, period_start("daily", now), period_start("monthly", now)


def duration(seconds: float) -> str:
    """OpenAI's reset format: `6s`, `1m2s`, `250ms`."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms" if seconds > 0 else "0s"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class Budget:
    """Settled spend per UTC day, per UTC month and in all, so changing a key's period needs no DB.

    A cost counts in the day and month its request was admitted in, as the
    ledger dates a row by its `created_at`; `spent` is the key's own period.
    """

    period: str
    day_start: float = -1.0
    day: float = 0.0
    month_start: float = -1.0
    month: float = 0.0
    total: float = 0.0
    reserved: float = 0.0     # worst cases of requests in flight

    @property
    def spent(self) -> float:
        return self.day if self.period == "daily" else self.month if self.period == "monthly" else self.total

    def roll(self, now: float) -> None:
        if self.day_start <= now < self.day_start + DAY:
            return
        day = period_start("daily", now)
        if day != self.day_start:
            self.day_start, self.day = day, 0.0
            month = period_start("monthly", now)
            if month != self.month_start:
                self.month_start, self.month = month, 0.0

    def load(self, now: float, day: float, month: float, total: float) -> None:
        self.roll(now)
        self.day, self.month, self.total = day, month, total

    def book(self, cost: float, day_start: float, month_start: float) -> None:
        self.total += cost
        if day_start == self.day_start:
            self.day += cost
        if month_start == self.month_start:
            self.month += cost


@dataclass
class Admission:
    """What one admitted request holds until it settles."""

    usage: KeyUsage
    request_entry: int    # handles of its bookings in the key's windows
    token_entry: int
    reserved_cost: float
    headers: dict[str, str]
    day_start: float
    month_start: float
    settled: bool = False

    def settle(self, now: float, tokens: int, cost: float) -> None:
        """Swap the prompt estimate for the real tokens, and the reserved worst case for the real cost."""
        if self.settled:
            return
        self.settled = True
        usage = self.usage
        usage.tpm.cancel(self.token_entry)
        if tokens:
            usage.tpm.add(now, tokens)
        budget = usage.budget
        budget.roll(now)
        budget.reserved -= self.reserved_cost
        budget.book(cost, self.day_start, self.month_start)


@dataclass
class KeyUsage:
    """The live counters of one key."""

    budget: Budget
    rpm: Window = field(default_factory=Window)
    tpm: Window = field(default_factory=Window)

    def admit(self, now: float, rpm_limit: int, tpm_limit: int, max_budget: float,
              prompt_tokens: int, worst_cost: float) -> Admission:
        """Refuse (raise) or book the request; never awaits."""
        rpm, tpm, budget = self.rpm, self.tpm, self.budget
        rpm.prune(now)
        tpm.prune(now)
        budget.roll(now)
        if prompt_tokens > tpm_limit:
            raise too_big(prompt_tokens, tpm_limit)
        if budget.spent + budget.reserved + worst_cost > max_budget + 1e-12:
            raise over_budget(max_budget, budget.period, worst_cost)
        if rpm.total + 1 > rpm_limit:
            raise over_rate("requests", rpm_limit, rpm.wait_for_room(now, 1, rpm_limit),
                            self.headers(now, rpm_limit, tpm_limit))
        if tpm.total + prompt_tokens > tpm_limit:
            raise over_rate("tokens", tpm_limit, tpm.wait_for_room(now, prompt_tokens, tpm_limit),
                            self.headers(now, rpm_limit, tpm_limit))
        request_entry = rpm.add(now, 1)
        token_entry = tpm.add(now, prompt_tokens)
        budget.reserved += worst_cost
        return Admission(self, request_entry, token_entry, worst_cost, self.headers(now, rpm_limit, tpm_limit),
                         budget.day_start, budget.month_start)

    def headers(self, now: float, rpm_limit: int, tpm_limit: int) -> dict[str, str]:
        return rate_headers(rpm_limit, self.rpm.total, self.rpm.reset_in(now),
                            tpm_limit, self.tpm.total, self.tpm.reset_in(now))


# -- what both limiters answer, built in one place so memory and Redis cannot drift ---------------
def rate_headers(rpm_limit: int, rpm_used: int, rpm_reset: float,
                 tpm_limit: int, tpm_used: int, tpm_reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(rpm_limit),
        "x-ratelimit-remaining-requests": str(max(rpm_limit - rpm_used, 0)),
        "x-ratelimit-reset-requests": duration(rpm_reset),
        "x-ratelimit-limit-tokens": str(tpm_limit),
        "x-ratelimit-remaining-tokens": str(max(tpm_limit - tpm_used, 0)),
        "x-ratelimit-reset-tokens": duration(tpm_reset),
    }


def too_big(prompt_tokens: int, tpm_limit: int) -> RateLimited:
    return RateLimited(f"This request's estimated {prompt_tokens} prompt tokens exceed the key's limit of "
                       f"{tpm_limit} tokens per minute; it can never be admitted.",
                       code="request_exceeds_limit", headers={"x-should-retry": "false"})


def over_budget(max_budget: float, period: str, worst_cost: float) -> BudgetExceeded:
    budget = f"{max_budget:.2f}" if max_budget == round(max_budget, 2) else f"{max_budget:.6f}".rstrip("0")
    return BudgetExceeded(f"This key's budget of ${budget} ({period}) is spent or would be "
                          f"exceeded by this request (worst case ${worst_cost:.6f}).",
                          headers={"x-should-retry": "false"})


def over_rate(unit: str, limit: int, wait: float, headers: dict[str, str]) -> RateLimited:
    """`Retry-After` in whole seconds, at least 1: when the window has room for this request."""
    return RateLimited(f"Rate limit of {limit} {unit} per minute reached; retry in {math.ceil(wait)}s.",
                       headers={"retry-after": str(max(math.ceil(wait), 1)), **headers})
