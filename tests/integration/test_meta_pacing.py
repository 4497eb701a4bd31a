"""Pacing against real Redis: the Lua schedules, reservations, backoff and pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bisnesgpt.config import load_settings
from bisnesgpt.engines.meta.pacing import Pacer, PhoneRates, phone_key, rates_for_phone
from bisnesgpt.infra.redis import redis_client

pytestmark = pytest.mark.integration


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    first, second = redis_client(redis_url), redis_client(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


NO_PAIR = PhoneRates(messages_per_second=50, burst=1, pair_interval_ms=0, pair_burst=1)


async def test_phone_schedule_reserves_slots_and_honours_them(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    pacer = Pacer(clients[0])
    decisions, began, ended = [], [], []
    for i in range(6):
        began.append(time.monotonic())
        decisions.append(await pacer.acquire("c", 0, f"60{i}", f"m{i}", NO_PAIR))
        ended.append(time.monotonic())
    assert decisions[0].go
    waits = [d.wait_ms for d in decisions[1:]]
    assert all(not d.go and d.reason == "phone" for d in decisions[1:])
    # 50/s: one slot every 20 ms after the first, reserved in order. A wait counts from the
    # moment of its own call, so it is the slot minus the time since the first call (bounded
    # by the calls' start and end times, whatever the machine's speed).
    for index, wait in enumerate(waits, start=1):
        since_first_ms = ((began[index] - ended[0]) * 1000, (ended[index] - began[0]) * 1000)
        assert 20 * index - since_first_ms[1] - 2 <= wait <= 20 * index - since_first_ms[0] + 2, (waits, index)
    # Coming back early keeps the same slot (nothing new reserved), coming back on time goes.
    again = await pacer.acquire("c", 0, "605", "m5", NO_PAIR)
    assert not again.go and again.wait_ms <= waits[-1]
    await asyncio.sleep(waits[-1] / 1000 + 0.01)
    for i in range(1, 6):
        assert (await pacer.acquire("c", 0, f"60{i}", f"m{i}", NO_PAIR)).go
    # The schedule moved on by exactly the reserved slots: the next newcomer waits a little at most.
    late = await pacer.acquire("c", 0, "609", "m9", NO_PAIR)
    assert late.go or late.wait_ms <= 20


async def test_two_instances_share_one_schedule(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    one, two = Pacer(clients[0]), Pacer(clients[1])
    # One slot per second: the ten calls land well within the first slot on any machine.
    slow = PhoneRates(messages_per_second=1, burst=1, pair_interval_ms=0, pair_burst=1)
    results = await asyncio.gather(*[(one if i % 2 else two).acquire("c", 1, f"7{i}", f"x{i}", slow)
                                     for i in range(10)])
    assert sum(d.go for d in results) == 1
    # Nine slots reserved one after another on the shared schedule, 1 s apart.
    assert sorted(d.wait_ms for d in results if not d.go)[-1] >= 8000


async def test_other_phones_are_never_held_up(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    pacer = Pacer(clients[0])
    for i in range(20):
        await pacer.acquire("busy", 0, f"8{i}", f"b{i}", NO_PAIR)
    assert (await pacer.acquire("idle", 0, "81", "i1", NO_PAIR)).go


async def test_recipient_spacing_and_backoff(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    pacer = Pacer(clients[0])
    rates = PhoneRates(messages_per_second=1000, burst=10, pair_interval_ms=1000, pair_burst=2)
    first, second, third = [await pacer.acquire("c", 2, "601", f"r{i}", rates) for i in range(3)]
    assert first.go and second.go
    assert not third.go and third.reason == "recipient" and 900 <= third.wait_ms <= 1000
    assert (await pacer.acquire("c", 2, "602", "other", rates)).go  # other recipients flow
    n, delay = await pacer.back_off_recipient("c", 2, "601", max_exponent=5)
    assert (n, delay) == (1, 4000)
    blocked = await pacer.acquire("c", 2, "601", "r3", rates)
    assert not blocked.go and blocked.reason == "backoff" and blocked.wait_ms > 3900
    # A refusal of a request already in flight during the backoff does not escalate it.
    n, remaining = await pacer.back_off_recipient("c", 2, "601", max_exponent=5)
    assert n == 1 and 3900 <= remaining <= 4000
    await clients[0].hset(f"{phone_key('c', 2)}:backoff:601", "until", "0")  # the backoff ran out
    assert (await pacer.back_off_recipient("c", 2, "601", max_exponent=5)) == (2, 16000)
    await clients[0].hset(f"{phone_key('c', 2)}:backoff:601", "until", "0")
    assert (await pacer.back_off_recipient("c", 2, "601", max_exponent=2))[1] == 16000  # capped exponent
    assert (await pacer.acquire("c", 2, "603", "third-party", rates)).go
    await pacer.clear_recipient_backoff("c", 2, "601")
    assert (await pacer.acquire("c", 2, "601", "r3", rates)).reason != "backoff"


async def test_pause_stops_the_whole_phone(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    pacer = Pacer(clients[0])
    await pacer.pause_phone("c", 3, 0.4)
    decision = await pacer.acquire("c", 3, "601", "p1", NO_PAIR)
    assert not decision.go and decision.reason == "paused" and 300 <= decision.wait_ms <= 400
    assert (await pacer.acquire("c", 4, "601", "p2", NO_PAIR)).go
    await asyncio.sleep(0.45)
    assert (await pacer.acquire("c", 3, "601", "p1", NO_PAIR)).go


async def test_retry_counter(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    pacer = Pacer(clients[0])
    assert [await pacer.count_retry("m:1.0") for _ in range(3)] == [1, 2, 3]
    assert await pacer.count_retry("m:2.0") == 1  # re-queued: a fresh count


def test_rates_from_phone_settings() -> None:
    settings = load_settings(_env_file=None)
    assert rates_for_phone(settings, {}).messages_per_second == 80
    assert rates_for_phone(settings, {}).burst == 8
    assert rates_for_phone(settings, {"coexistence": True}).messages_per_second == 20
    custom = rates_for_phone(settings, {"messages_per_second": 250, "pair_interval_ms": 0, "pair_burst": 3})
    assert (custom.messages_per_second, custom.burst, custom.pair_interval_ms, custom.pair_burst) == (250, 25, 0, 3)


async def test_a_go_takes_the_send_gate_in_the_same_round_trip(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    client = clients[0]
    pacer = Pacer(client)
    company = f"gate-{time.monotonic_ns()}"
    # A generous phone schedule (burst 10) but a gate of one: the messages may go, spaced by the gate.
    rates = PhoneRates(messages_per_second=20, burst=10, pair_interval_ms=0, pair_burst=1, gate_burst=1)
    await pacer.acquire(company, 9, "600", "warm", rates)  # the script is loaded (a first EVALSHA may reload it)
    sent: list[str] = []
    real = client.execute_command

    async def counted(*args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return await real(*args, **options)

    client.execute_command = counted  # type: ignore[method-assign]
    decisions = [await pacer.acquire(company, 9, f"60{i}", f"g{i}", rates) for i in range(3)]
    assert len(sent) == 3, sent  # one call per message: pacing, gate and the backoff check together
    assert all(d.go for d in decisions)
    assert [d.gate_ms > 0 for d in decisions] == [True, True, True]  # each waits one gate interval more
    assert 40 <= decisions[0].gate_ms <= 50 and 140 <= decisions[2].gate_ms <= 150
    assert not any(d.backoff_known for d in decisions)
    await pacer.back_off_recipient(company, 9, "601", max_exponent=5)
    await client.hset(f"{phone_key(company, 9)}:backoff:601", "until", "0")  # the backoff ran out, its count stays
    assert (await pacer.acquire(company, 9, "601", "g9", rates)).backoff_known
