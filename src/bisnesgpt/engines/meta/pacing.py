"""Per-phone and per-recipient pacing in Redis, shared by every meta instance.

Both limits are GCRA schedules (a token bucket expressed as a "theoretical arrival time"),
advanced atomically by one Lua script using Redis's clock, so N meta processes share them:

* the phone's throughput (Meta: 80 msg/s by default, 20 for coexistence numbers), with a
  small burst (``META_PACING_BURST_MS`` worth of messages);
* the pair rate to one recipient (about one message per 6 s, bursts tolerated).

A message that may not go now **reserves** its slot and is told how long to wait; the
worker delays the job (``DeferSend``) instead of spinning, so a phone with a backlog never
holds a worker slot that another phone's message could use. When the job comes back, its
reservation lets it through without taking a second slot. A message first waits for its
recipient slot, then takes a phone slot (so a slow recipient never punches holes in the
phone's schedule).

Also here: the 131056 recipient backoff (4^n seconds, for that recipient only) and the
phone pause that 368/131031 trigger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis

from bisnesgpt.config import Settings

PREFIX = "bisnesgpt:meta"

# KEYS: 1 phone schedule, 2 recipient schedule, 3 this message's reservation,
#       4 recipient backoff (hash until/n), 5 phone pause (until ms), 6 send gate schedule
# ARGV: 1 phone interval ms, 2 phone tolerance ms, 3 recipient interval ms,
#       4 recipient tolerance ms, 5 early-wake tolerance ms, 6 gate interval ms, 7 gate tolerance ms
# Returns {code, wait_ms, gate_ms, backoff_known}: code 0 go, 1 wait for phone slot, 2 wait for
# recipient slot, 3 recipient backing off, 4 phone paused. A message that may go also takes its
# send gate slot in the same call (gate_ms: how long to wait for it), and learns whether its
# recipient has a backoff count to clear once a send gets through (backoff_known 1): pacing is
# one round trip per send.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local early = tonumber(ARGV[5])
-- One GCRA step on a schedule (an interval of 0 never waits): advance it by one message;
-- when the slot comes later than ``early`` ms from now, reserve it for this message
-- (tagged p or r) and answer {code, wait_ms}; nil when the message may go on now.
local function take(schedule, interval, tolerance, tag, code)
  if interval <= 0 then return nil end
  local tat = tonumber(redis.call('GET', schedule) or '0')
  if tat < now then tat = now end
  local allow = tat - tolerance
  redis.call('SET', schedule, tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
  if allow > now + early then
    redis.call('SET', KEYS[3], tag .. ':' .. tostring(allow), 'PX', math.ceil(allow - now) + 600000)
    return {code, tostring(allow - now)}
  end
  return nil
end
-- The send gate: the phone's schedule says when a job should wake; the gate spaces the
-- moments requests actually leave. Jobs that wake late together (a stalled or restarted
-- process, delayed jobs queued behind fresh ones) may catch up by at most ``gate_burst``
-- messages (META_PACING_CATCHUP_MS worth), never as an unbounded burst. Reserve-and-wait:
-- each message that may go takes the next gate slot and waits in-process until it.
local function go()
  local gate = tonumber(redis.call('GET', KEYS[6]) or '0')
  if gate < now then gate = now end
  local interval = tonumber(ARGV[6])
  redis.call('SET', KEYS[6], tostring(gate + interval), 'PX', math.ceil(gate + interval - now) + 1000)
  local allow = gate - tonumber(ARGV[7])
  local wait = 0
  if allow > now then wait = math.ceil(allow - now) end
  return {0, '0', tostring(wait), redis.call('EXISTS', KEYS[4])}
end
local paused = tonumber(redis.call('GET', KEYS[5]) or '0')
if paused > now then return {4, tostring(paused - now)} end
local backoff = tonumber(redis.call('HGET', KEYS[4], 'until') or '0')
if backoff > now then
  redis.call('DEL', KEYS[3])
  return {3, tostring(backoff - now)}
end
local stage = 'recipient'
local held = redis.call('GET', KEYS[3])
if held then
  local kind = string.sub(held, 1, 1)
  local slot = tonumber(string.sub(held, 3))
  if slot > now + early then
    if kind == 'p' then return {1, tostring(slot - now)} end
    return {2, tostring(slot - now)}
  end
  redis.call('DEL', KEYS[3])
  if kind == 'p' then return go() end
  stage = 'phone'
end
if stage == 'recipient' then
  local waiting = take(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), 'r', 2)
  if waiting then return waiting end
end
local waiting = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 'p', 1)
if waiting then return waiting end
return go()
"""

# KEYS: 1 recipient backoff hash. ARGV: 1 max exponent. Returns {n, delay_ms}.
# Refusals of requests that were already in flight when a backoff began do not escalate it.
BACKOFF_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local active = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if active > now then
  return {tonumber(redis.call('HGET', KEYS[1], 'n') or '1'), math.ceil(active - now)}
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local capped = math.min(n, tonumber(ARGV[1]))
local delay = math.floor(4 ^ capped * 1000)
redis.call('HSET', KEYS[1], 'until', tostring(now + delay))
redis.call('PEXPIRE', KEYS[1], delay + 3600000)
return {n, delay}
"""

# KEYS: 1 pause key. ARGV: 1 duration ms. Returns remaining ms.
PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilms = now + tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(untilms), 'PX', tonumber(ARGV[1]))
return tonumber(ARGV[1])
"""

EARLY_WAKE_MS = 2.0


@dataclass(frozen=True)
class PhoneRates:
    """The limits one phone is paced with."""

    messages_per_second: float
    burst: int
    pair_interval_ms: int
    pair_burst: int
    gate_burst: int = 1

    @property
    def interval_ms(self) -> float:
        """Milliseconds between two messages of the phone at its rate."""
        return 1000.0 / self.messages_per_second


def rates_for_phone(settings: Settings, phone_settings: Mapping[str, object] | None) -> PhoneRates:
    """Defaults from settings, overridden by ``phone_configs.settings``.

    Keys: ``messages_per_second`` (number), ``coexistence`` (true → the 20/s coexistence
    default), ``pair_interval_ms``, ``pair_burst``.
    """
    overrides = phone_settings or {}
    rate = settings.meta_phone_messages_per_second
    if overrides.get("coexistence"):
        rate = settings.meta_coexistence_messages_per_second
    given_rate = overrides.get("messages_per_second")
    if isinstance(given_rate, int | float) and given_rate > 0:
        rate = float(given_rate)
    burst = max(1, math.floor(rate * settings.meta_pacing_burst_ms / 1000))
    gate_burst = max(burst, math.floor(rate * settings.meta_pacing_catchup_ms / 1000))
    pair_interval = _whole(overrides, "pair_interval_ms", settings.meta_pair_interval_ms)
    pair_burst = _whole(overrides, "pair_burst", settings.meta_pair_burst)
    return PhoneRates(rate, burst, max(0, pair_interval), max(1, pair_burst), gate_burst)


def _whole(overrides: Mapping[str, object], name: str, default: int) -> int:
    value = overrides.get(name, default)
    if not isinstance(value, int | float | str):
        raise TypeError(f"phone setting {name} is not a number: {value!r}")
    return int(value)


Reason = Literal["ok", "phone", "recipient", "backoff", "paused"]


@dataclass(frozen=True)
class Decision:
    """Whether a message may go now; if not, how long to wait and for what (its slot is kept)."""

    go: bool
    wait_ms: int
    reason: Reason
    gate_ms: int = 0  # a message that may go: how long to wait for its send gate slot (taken)
    backoff_known: bool = False  # its recipient has a 131056 count to clear once a send gets through


_REASONS: dict[int, Reason] = {0: "ok", 1: "phone", 2: "recipient", 3: "backoff", 4: "paused"}


def phone_key(company_id: str, phone_index: int) -> str:
    """The prefix of one phone's pacing keys (its hash tag keeps them in one Redis Cluster slot)."""
    return f"{PREFIX}:{{{company_id}:{phone_index}}}"


class Pacer:
    """The Redis side of pacing; one per process, on the process's Redis client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._backoff = redis.register_script(BACKOFF_LUA)
        self._pause = redis.register_script(PAUSE_LUA)

    async def acquire(self, company_id: str, phone_index: int, contact: str, message_id: str,
                      rates: PhoneRates) -> Decision:
        """May this message go now (its gate slot then taken)? Otherwise how long to wait (its slot is reserved)."""
        base = phone_key(company_id, phone_index)
        keys = [f"{base}:rate", f"{base}:pair:{contact}", f"{base}:res:{message_id}", f"{base}:backoff:{contact}",
                f"{base}:pause", f"{base}:gate"]
        args = [rates.interval_ms, (rates.burst - 1) * rates.interval_ms, rates.pair_interval_ms,
                (rates.pair_burst - 1) * rates.pair_interval_ms, EARLY_WAKE_MS, rates.interval_ms,
                (rates.gate_burst - 1) * rates.interval_ms]
        answer = cast(list[Any], await self._acquire(keys=keys, args=args))
        code = int(answer[0])
        if code:
            return Decision(False, max(1, math.ceil(float(answer[1]))), _REASONS[code])
        return Decision(True, 0, "ok", gate_ms=int(answer[2]), backoff_known=bool(int(answer[3])))

    async def back_off_recipient(self, company_id: str, phone_index: int, contact: str,
                                 max_exponent: int) -> tuple[int, int]:
        """Record one more 131056 for the recipient; returns (n, delay ms = 4^n s, capped)."""
        key = f"{phone_key(company_id, phone_index)}:backoff:{contact}"
        n, delay = cast(list[Any], await self._backoff(keys=[key], args=[max_exponent]))
        return int(n), int(delay)

    async def clear_recipient_backoff(self, company_id: str, phone_index: int, contact: str) -> None:
        """A message got through to the recipient: the next 131056 starts again at 4^1 s."""
        await self.redis.delete(f"{phone_key(company_id, phone_index)}:backoff:{contact}")

    async def pause_phone(self, company_id: str, phone_index: int, seconds: float) -> None:
        """Hold every message of the phone for ``seconds`` (its account was restricted)."""
        await self._pause(keys=[f"{phone_key(company_id, phone_index)}:pause"], args=[int(seconds * 1000)])

    async def resume_phone(self, company_id: str, phone_index: int) -> None:
        """End the phone's pause before it runs out."""
        await self.redis.delete(f"{phone_key(company_id, phone_index)}:pause")

    async def count_retry(self, retry_key: str) -> int:
        """Retryable failures of one queued message so far (including this one)."""
        key = f"{PREFIX}:retries:{retry_key}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 86_400)
            count, _ = await pipe.execute()
        return int(count)
