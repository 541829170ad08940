"""The Redis limiter: exact limits shared by any number of gateway processes.

One script call per admission and one per settlement (lua.py); calls made
while a round trip is on the wire leave together in the next pipeline (pipe.py),
so under load a round trip carries many. Time, limits and period starts are sent by the caller,
so refusals, `Retry-After` and the rate-limit headers come out exactly as the memory limiter's.

State with no epoch in Redis (a fresh or restarted Redis) is rebuilt from the ledger first, by
whichever process gets there first: the rebuild script writes only when the epoch is still
missing, so several processes starting together rebuild once.

When Redis does not answer, this process stops calling it (each request would wait for a
timeout), refuses with 503 `limiter_unavailable` (or admits on its own counters with
`limiter_fallback: memory`), and probes every half second; when Redis answers again it
replays the settlements it could not send and admits through Redis again. No restart.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.clock import Clock
from gateway.limiter import lua
from gateway.limiter.base import FactsSource, Limiter, LimiterUnavailable, describe
from gateway.limiter.memory import MemoryLimiter
from gateway.limiter.pipe import Pipe, pack_args
from gateway.limiter.windows import DAY, SPAN, Admission, over_budget, over_rate, period_start, rate_headers, too_big

if TYPE_CHECKING:   # keys.py builds each key's counters from windows.py: a type here, not an import
    from gateway.keys import KeyState

log = logging.getLogger("gateway.limiter")

EPOCH = "gw:epoch"
LEASE = 900.0                 # seconds a reservation outlives a process that died holding it
WINDOW_TTL_MS = str(int((SPAN + 60) * 1000))
LEASE_TTL_MS = str(int((LEASE + 60) * 1000))
PROBE_INTERVAL = 0.5
MAX_PENDING = 100_000         # settlements kept for replay while Redis is away
_DOWN = (RedisError, OSError, asyncio.TimeoutError)


class _Script:
    __slots__ = ("text", "sha")

    def __init__(self, text: str):
        import hashlib
        self.text, self.sha = text, hashlib.sha1(text.encode()).hexdigest()


class RedisTicket:
    """An admission booked in Redis; settling sends one script call in the background."""

    __slots__ = ("limiter", "key_id", "member", "prompt", "worst", "day_start", "month_start", "epoch", "headers",
                 "settled")

    def __init__(self, limiter: RedisLimiter, key_id: str, member: str, prompt: str, worst: str,
                 day_start: float, month_start: float, epoch: bytes, headers: dict[str, str]):
        self.limiter, self.key_id, self.member, self.prompt, self.worst = limiter, key_id, member, prompt, worst
        self.day_start, self.month_start, self.epoch, self.headers = day_start, month_start, epoch, headers
        self.settled = False

    def settle(self, now: float, tokens: int, cost: float) -> None:
        if self.settled:
            return
        self.settled = True
        self.limiter.settle_later(self.key_id, now, tokens, cost, self.day_start, self.month_start,
                                  f"{self.member}|{self.prompt}", f"{self.member}|{self.worst}", self.epoch,
                                  self.member)


class FallbackTicket:
    """Admitted on this process's own counters while Redis was away; its cost reaches Redis later."""

    __slots__ = ("limiter", "key_id", "admission", "epoch", "headers")

    def __init__(self, limiter: RedisLimiter, key_id: str, admission: Admission, epoch: bytes | None):
        self.limiter, self.key_id, self.admission, self.epoch = limiter, key_id, admission, epoch
        self.headers = admission.headers

    def settle(self, now: float, tokens: int, cost: float) -> None:
        if self.admission.settled:
            return
        self.admission.settle(now, tokens, cost)
        if self.epoch is not None:
            self.limiter.queue_replay(self.key_id, now, tokens, cost, self.admission.day_start,
                                      self.admission.month_start, self.epoch)


class RedisLimiter(Limiter):
    kind = "redis"

    def __init__(self, url: str, fallback_memory: bool, clock: Clock, facts: FactsSource):
        self.url, self.fallback_memory, self.clock, self.facts = url, fallback_memory, clock, facts
        self.where = describe(url)
        self.client = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                              retry=Retry(NoBackoff(), 0), max_connections=64)
        self.pipe = Pipe(self.client)
        self.memory = MemoryLimiter()
        self.epoch: bytes | None = None
        self.healthy = False
        self.failures = 0
        self.fallback_admissions = 0
        self.pending: deque[tuple[Any, ...]] = deque(maxlen=MAX_PENDING)
        self._tag = secrets.token_hex(4) + format(os.getpid(), "x")
        self._seq = itertools.count()
        self._names: dict[str, tuple[str, str, str, str]] = {}
        self._heads: dict[str, tuple[bytes, bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._probe: asyncio.Task[None] | None = None
        self._epoch_lock = asyncio.Lock()
        self._script_lock = asyncio.Lock()
        self._period = (0.0, -1.0, -1.0)     # (valid until, day start, month start)
        self._admit, self._settle = _Script(lua.ADMIT), _Script(lua.SETTLE)
        self._usage = _Script(lua.USAGE)

    # -- lifetime ---------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._connect()
        except _DOWN as exc:
            self._down(exc)
            return
        log.info("limiter: redis at %s, epoch %s", self.where, (self.epoch or b"?").decode())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=5)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self.healthy and self.pending:
            try:
                await self._replay()
            except _DOWN:
                pass
        if self.pending:
            log.error("limiter: %d settlements could not reach redis at %s before shutdown; "
                      "the ledger has them, a rebuild counts them", len(self.pending), self.where)
        await self.client.aclose()

    def status(self) -> dict[str, float]:
        return {"up": float(self.healthy), "failures": float(self.failures),
                "fallback_admissions": float(self.fallback_admissions), "pending_settlements": float(len(self.pending))}

    async def _connect(self) -> None:
        await self.client.ping()
        await self._load_scripts()
        await self._ensure_epoch()
        await self._replay()
        self.healthy = True

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        if self.healthy or self._probe is None:
            log.error("limiter: redis at %s does not answer (%s: %s); %s until it does", self.where,
                      type(exc).__name__, str(exc)[:200],
                      "admitting on this process's own counters" if self.fallback_memory
                      else "refusing requests with 503 limiter_unavailable")
        self.healthy = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_up(), name="limiter-probe")

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self._connect()
            except _DOWN:
                continue
            except Exception as exc:  # a bug of ours must not stop the probing
                log.error("limiter: probe failed: %s", type(exc).__name__)
                continue
            log.warning("limiter: redis at %s answers again (epoch %s); admitting through it", self.where,
                        (self.epoch or b"?").decode())
            return

    # -- calls ------------------------------------------------------------------------------
    async def _call(self, script: _Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        try:
            return await self.pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:     # a restarted Redis forgot the scripts
            await self._load_scripts()
            return await self.pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _load_scripts(self) -> None:
        """Once for all the callers that found them missing at the same time."""
        async with self._script_lock:
            if await self.client.script_exists(self._admit.sha) == [True]:
                return
            for script in (self._admit, self._settle, self._usage):
                await self.client.script_load(script.text)

    async def _ensure_epoch(self) -> None:
        async with self._epoch_lock:
            current = await self.client.get(EPOCH)
            if current is not None:
                self.epoch = cast(bytes, current)   # the client is made without decode_responses
                return
            now = self.clock.now()
            facts = await self.facts(now)
            budgets: dict[str, list[float]] = {}
            for key_id in facts.total:
                budgets[key_id] = [facts.day.get(key_id, 0.0), facts.month.get(key_id, 0.0), facts.total[key_id]]
            payload = orjson.dumps({"ds": facts.day_start, "ms": facts.month_start, "budgets": budgets,
                                    "recent": facts.recent})
            mine = secrets.token_hex(8).encode()
            slow = aioredis.Redis.from_url(self.url, socket_timeout=60.0, socket_connect_timeout=1.0,
                                           retry=Retry(NoBackoff(), 0))
            try:     # a big ledger makes a big script call: not under the request path's 1 s timeout
                self.epoch = await slow.eval(lua.REBUILD, 1, EPOCH, mine, payload, WINDOW_TTL_MS)
            finally:
                await slow.aclose()
            if self.epoch == mine:
                log.warning("limiter: redis at %s had no state; rebuilt from the ledger (%d keys with spend, "
                            "%d admissions in the last minute)", self.where, len(budgets), len(facts.recent))

    def _periods(self, now: float) -> tuple[float, float]:
        until, day, month = self._period
        if not (day <= now < until):
            day, month = period_start("daily", now), period_start("monthly", now)
            self._period = (day + DAY, day, month)
        return day, month

    def _keys(self, key_id: str) -> tuple[str, str, str, str]:
        names = self._names.get(key_id)
        if names is None:
            p = f"gw:{{{key_id}}}:"
            names = self._names[key_id] = (p + "r", p + "t", p + "v", p + "b")
        return names

    def _packed_heads(self, key_id: str) -> tuple[bytes, bytes]:
        """EVALSHA, the script and the key names of ADMIT and SETTLE for one key, packed once."""
        heads = self._heads.get(key_id)
        if heads is None:
            r, t, v, b = self._keys(key_id)
            heads = self._heads[key_id] = (
                b"*22\r\n" + pack_args(("EVALSHA", self._admit.sha, 5, r, t, v, b, EPOCH)),     # + 14 ARGV
                b"*20\r\n" + pack_args(("EVALSHA", self._settle.sha, 4, t, v, b, EPOCH)))     # + 13 ARGV
        return heads

    def _usage_keys(self, key_id: str) -> tuple[str, str, str]:
        r, t, _, b = self._keys(key_id)
        return r, t, b

    # -- the request path -------------------------------------------------------------------
    async def admit(self, key: KeyState, now: float, prompt: int, worst: float) -> Any:
        row = key.row
        if prompt > row.tpm_limit:
            raise too_big(prompt, row.tpm_limit)
        if not self.healthy:
            return self._fallback(key, now, prompt, worst)
        day, month = self._periods(now)
        member = f"{self._tag}.{next(self._seq)}"
        worst_s = repr(worst)
        varying = (repr(now), repr(now - SPAN), row.rpm_limit, row.tpm_limit, repr(row.max_budget), prompt, worst_s,
                   row.budget_period, repr(day), repr(month), member, repr(now + LEASE))
        call = self.pipe.send(self._packed_heads(row.id)[0] + pack_args(varying) + _ADMIT_TAIL)
        try:
            try:
                result = await asyncio.shield(call)
            except NoScriptError:
                await self._load_scripts()
                result = [-1]
            if result[0] == -1:
                result = await self._admit_again((*self._keys(row.id), EPOCH), (*varying, WINDOW_TTL_MS, LEASE_TTL_MS))
        except asyncio.CancelledError:     # the client left while Redis booked: give the booking back
            call.add_done_callback(lambda done: self._release_orphan(done, row.id, now, prompt, worst_s, member,
                                                                     day, month))
            raise
        except _DOWN as exc:
            self._down(exc)
            return self._fallback(key, now, prompt, worst)
        status, epoch = result[0], result[1]
        headers = rate_headers(row.rpm_limit, result[2], _left(result[3], now), row.tpm_limit,
                               int(float(result[4])), _left(result[5], now))
        if status == 1:
            return RedisTicket(self, row.id, member, str(prompt), worst_s, day, month, epoch, headers)
        if status == 2:
            raise over_budget(row.max_budget, row.budget_period, worst)
        wait = _left(result[6], now) if result[6] else SPAN
        if status == 3:
            raise over_rate("requests", row.rpm_limit, wait, headers)
        raise over_rate("tokens", row.tpm_limit, wait, headers)

    async def _admit_again(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> list[Any]:
        """The slow path: scripts forgotten, or state lost (rebuild from the ledger first)."""
        result: list[Any] = await self._call(self._admit, keys, args)
        if result[0] == -1:
            await self._ensure_epoch()
            result = await self._call(self._admit, keys, args)
            if result[0] == -1:
                raise RedisError("no epoch after a rebuild")
        return result

    def _release_orphan(self, done: asyncio.Future[Any], key_id: str, now: float, prompt: int, worst: str,
                        member: str, day: float, month: float) -> None:
        if done.cancelled() or done.exception() is not None or done.result()[0] != 1:   # nothing was booked
            return
        self.settle_later(key_id, now, 0, 0.0, day, month, f"{member}|{prompt}", f"{member}|{worst}",
                          done.result()[1], member)

    def _fallback(self, key: KeyState, now: float, prompt: int, worst: float) -> FallbackTicket:
        if not self.fallback_memory:
            raise LimiterUnavailable()
        admission = key.usage.admit(now, key.row.rpm_limit, key.row.tpm_limit, key.row.max_budget, prompt, worst)
        self.fallback_admissions += 1
        return FallbackTicket(self, key.row.id, admission, self.epoch)

    # -- settlements ------------------------------------------------------------------------
    def settle_later(self, key_id: str, now: float, tokens: int, cost: float, day_start: float,
                     month_start: float, estimate: str, reservation: str, epoch: bytes, member: str,
                     replay: str = "0") -> None:
        day, month = self._periods(now)
        args = (repr(now), estimate, tokens, repr(cost), repr(day_start), repr(month_start), reservation, epoch,
                replay, repr(day), repr(month), member, WINDOW_TTL_MS)
        _, t, v, b = self._keys(key_id)
        if not self.healthy:
            self.pending.append(((t, v, b, EPOCH), (*args[:8], "1", *args[9:])))
            return
        call = self.pipe.send(self._packed_heads(key_id)[1] + pack_args(args[:12]) + _SETTLE_TAIL)
        self._inflight.add(call)
        call.add_done_callback(lambda done: self._settled(done, (t, v, b, EPOCH), args))

    def _settled(self, done: asyncio.Future[Any], keys: tuple[str, ...], args: tuple[Any, ...]) -> None:
        """Nothing to do unless the call failed: then the slow path, or keep it for replay."""
        self._inflight.discard(done)
        error = None if done.cancelled() else done.exception()
        if done.cancelled() or (isinstance(error, _DOWN) and not isinstance(error, NoScriptError)):
            self.pending.append((keys, (*args[:8], "1", *args[9:])))
            if error is not None:
                self._down(error)
            return
        if error is None and done.result() != -1:
            return
        task = asyncio.ensure_future(self._settle_call(keys, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def queue_replay(self, key_id: str, now: float, tokens: int, cost: float, day_start: float,
                     month_start: float, epoch: bytes) -> None:
        """A fallback admission's real usage, booked in Redis once it answers (unless it was rebuilt)."""
        day, month = self._periods(now)
        _, t, v, b = self._keys(key_id)
        member = f"{self._tag}.{next(self._seq)}"
        self.pending.append(((t, v, b, EPOCH), (repr(now), "", tokens, repr(cost), repr(day_start),
                                               repr(month_start), "", epoch, "1", repr(day), repr(month), member,
                                               WINDOW_TTL_MS)))

    async def _settle_call(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> None:
        try:
            if await self._call(self._settle, keys, args) == -1:
                await self._ensure_epoch()
                await self._call(self._settle, keys, args)
        except _DOWN as exc:
            self.pending.append((keys, (*args[:8], "1", *args[9:])))
            self._down(exc)

    async def _replay(self) -> None:
        while self.pending:
            keys, args = self.pending[0]
            if await self._call(self._settle, keys, args) == -1:
                await self._ensure_epoch()
                continue
            self.pending.popleft()

    # -- reports ----------------------------------------------------------------------------
    async def reports(self, keys: list[KeyState], now: float) -> list[dict[str, Any]]:
        if not self.healthy:
            if self.fallback_memory:
                return [key.report(now) for key in keys]
            return [{**key.row.public(), "rpm_used": None, "tpm_used": None, "spend_period": None,
                     "spend_total": None} for key in keys]
        edge = repr(now - SPAN)
        day, month = self._periods(now)
        try:
            usages = await asyncio.gather(*(self._call(self._usage, self._usage_keys(k.row.id), (edge,))
                                            for k in keys))
        except _DOWN as exc:
            self._down(exc)
            return await self.reports(keys, now)
        out = []
        for key, (rpm, tpm, ds, d, ms, m, tot) in zip(keys, usages, strict=True):
            daily = float(d) if float(ds) == day else 0.0
            monthly = float(m) if float(ms) == month else 0.0
            period = key.row.budget_period
            spent = daily if period == "daily" else monthly if period == "monthly" else float(tot)
            out.append({**key.row.public(), "rpm_used": int(rpm), "tpm_used": int(float(tpm)),
                        "spend_period": round(spent, 10), "spend_total": round(float(tot), 10)})
        return out


_ADMIT_TAIL = pack_args((WINDOW_TTL_MS, LEASE_TTL_MS))
_SETTLE_TAIL = pack_args((WINDOW_TTL_MS,))


def _left(score: bytes | str, now: float) -> float:
    """Seconds until an entry booked at `score` leaves the window (0 for an empty window), at most the
    window: the entry may carry a later clock than `now` (another process's, or a request that read the
    clock first and reached Redis last), and no wait or reset is ever longer than the window."""
    return min(max(float(score) + SPAN - now, 0.0), SPAN) if score else 0.0


