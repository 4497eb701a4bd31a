"""Rate limits kept in Redis, so every process of a deployment counts against the same budget.

Two Lua scripts, each one round trip (``EVALSHA``) per check, timed by the Redis server's clock
(so the processes' clocks never disagree about a window):

- ``GcraLimiter``: the generic cell rate algorithm. A limit of ``n`` per ``period`` lets ``n``
  through at once, then one every ``period / n`` — a sliding window without per-request
  entries. Several limits are judged together (a send counts against the minute and the day):
  either all take one, or none does.
- ``Backoff``: exponential backoff after failures (sign-in): the first ``free`` failures cost
  nothing, each further one doubles the wait before the next attempt is heard.

Redis being down never locks clients out: a check that cannot reach Redis allows (and is
counted), since a send is stored in PostgreSQL and dispatched later even without Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

LIMIT_CHECK_ERRORS = Counter("bisnesgpt_rate_limit_check_errors_total",
                             "Rate-limit checks that could not reach Redis (and so allowed the request)")

# KEYS: one bucket per limit. ARGV: limit_i, period_ms_i for each key, then the mode:
# "take" (count one if every limit allows), "peek" (would one more be allowed? count nothing).
# Answers {allowed, retry_after_ms, remaining of the first limit after this one}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[#ARGV]
local worst = 0
local tats = {}
local remaining = -1
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - period - now
  if wait > worst then worst = wait end
  tats[i] = new_tat
  if i == 1 then remaining = math.floor((period - (new_tat - now)) / interval) end
end
if worst > 0 then return {0, math.ceil(worst), 0} end
if mode == 'take' then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.3f', tats[i]), 'PX', math.max(1, math.ceil(tats[i] - now)))
  end
end
return {1, 0, remaining}
"""

# KEYS[1]: the subject's hash {n: failures, until: ms}. ARGV: mode ("check" | "fail" | "reset"),
# free failures, base ms, max ms, memory ms (failures are forgotten this long after the last).
# Answers {allowed, wait_ms}: for "check" whether an attempt may be made now; for "fail" the wait
# this failure imposes on the next attempt.
_BACKOFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, mode = KEYS[1], ARGV[1]
if mode == 'reset' then redis.call('DEL', key) return {1, 0} end
if mode == 'check' then
  local untl = tonumber(redis.call('HGET', key, 'until') or '0')
  if untl > now then return {0, untl - now} end
  return {1, 0}
end
local free, base, cap, memory = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = redis.call('HINCRBY', key, 'n', 1)
local delay = 0
if n > free then delay = math.min(cap, base * 2 ^ (n - free - 1)) end
redis.call('HSET', key, 'until', string.format('%d', now + delay))
redis.call('PEXPIRE', key, math.max(memory, delay))
return {1, delay}
"""


@dataclass(frozen=True)
class Rate:
    """``limit`` events per ``period_seconds`` (a burst of ``limit``, then one per period/limit)."""

    limit: int
    period_seconds: float


@dataclass(frozen=True)
class Verdict:
    """A limiter's answer: allowed or not, when to retry, and what is left of the first limit."""

    allowed: bool
    retry_after: float
    remaining: int


ALLOW = Verdict(True, 0.0, -1)


class GcraLimiter:
    """Checks and counts events against one or more ``Rate`` s in Redis (see module docstring)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.prefix = prefix
        self._script = redis.register_script(_GCRA)

    async def check(self, buckets: Sequence[tuple[str, Rate]], mode: Literal["take", "peek"] = "take") -> Verdict:
        """Judge one event against every (bucket, rate) at once; ``take`` counts it if all allow."""
        if not buckets:
            return ALLOW
        keys = [f"{self.prefix}:{name}" for name, _ in buckets]
        args: list[str | int] = []
        for _, rate in buckets:
            args += [rate.limit, int(rate.period_seconds * 1000)]
        args.append(mode)
        try:
            allowed, wait_ms, remaining = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            LIMIT_CHECK_ERRORS.inc()
            log.warning("rate limit %s not checked (Redis: %s); allowed", keys[0], exc)
            return ALLOW
        return Verdict(bool(allowed), int(wait_ms) / 1000, int(remaining))


@dataclass(frozen=True)
class BackoffPolicy:
    """``free`` failures cost nothing; then ``base * 2^k`` seconds, at most ``cap``; forgotten after ``memory``."""

    free: int
    base_seconds: float
    cap_seconds: float
    memory_seconds: float


class Backoff:
    """Exponential backoff per subject (a client address) after failures, in Redis."""

    def __init__(self, redis: aioredis.Redis, prefix: str, policy: BackoffPolicy) -> None:
        self.prefix = prefix
        self.policy = policy
        self._script = redis.register_script(_BACKOFF)

    async def _run(self, subject: str, mode: str) -> Verdict:
        p = self.policy
        try:
            allowed, wait_ms = await self._script(
                keys=[f"{self.prefix}:{subject}"],
                args=[mode, p.free, int(p.base_seconds * 1000), int(p.cap_seconds * 1000),
                      int(p.memory_seconds * 1000)])
        except (RedisError, OSError) as exc:
            LIMIT_CHECK_ERRORS.inc()
            log.warning("backoff %s not checked (Redis: %s); allowed", self.prefix, exc)
            return ALLOW
        return Verdict(bool(allowed), int(wait_ms) / 1000, -1)

    async def check(self, subject: str) -> Verdict:
        """Whether ``subject`` may make an attempt now (else how long it must wait)."""
        return await self._run(subject, "check")

    async def failed(self, subject: str) -> Verdict:
        """Count a failure; the verdict's ``retry_after`` is the wait it imposes (0 while free)."""
        return await self._run(subject, "fail")

    async def reset(self, subject: str) -> None:
        """A success: forget the subject's failures."""
        await self._run(subject, "reset")
