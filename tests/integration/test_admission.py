"""Admission control: a busy pool and a lagging event loop are refused fast (Overloaded), never queued.

Against real PostgreSQL: a pool whose every connection is held refuses a caller without its
own timeout after ``pool_wait``, while a caller with an explicit timeout (a stored message's
``?wait=`` poll, health pings) still waits; the send gate refuses while the loop lags.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bisnesgpt.api.admission import LAG_SAMPLE_SECONDS, LoopLag, SendAdmission
from bisnesgpt.core.errors import DatabaseUnavailable, Overloaded
from bisnesgpt.db.pool import POOL_REFUSED, Database
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_a_busy_pool_refuses_after_its_wait_and_an_explicit_timeout_still_waits(database_url: str) -> None:
    db = Database(database_url, max_size=1, min_size=1, pool_wait=0.1)
    await db.open()
    try:
        refused_before = POOL_REFUSED._value.get()
        async with db.connection():
            with pytest.raises(Overloaded, match="all 1 database connections"):
                await db.fetchval("SELECT 1")
            assert POOL_REFUSED._value.get() == refused_before + 1

            async def with_explicit_timeout() -> int:
                async with db.connection(timeout=5) as conn:
                    return int(await conn.fetchval("SELECT 2"))

            # An explicit timeout is not admission: it waits for the connection this block frees.
            waiter = asyncio.create_task(with_explicit_timeout())
            await asyncio.sleep(0.3)
            assert not waiter.done()
        assert await waiter == 2
        assert await db.fetchval("SELECT 1") == 1  # a free connection: admitted at once
    finally:
        await db.close()


async def test_without_pool_wait_a_busy_pool_waits_and_then_reports_unavailable(database_url: str) -> None:
    db = Database(database_url, max_size=1, min_size=1, connect_timeout=0.3)
    await db.open()
    try:
        async with db.connection():
            with pytest.raises(DatabaseUnavailable) as caught:
                await db.fetchval("SELECT 1")
            assert not isinstance(caught.value, Overloaded)
    finally:
        await db.close()


async def test_the_send_gate_refuses_while_the_loop_lags_and_admits_once_it_catches_up() -> None:
    lag = LoopLag()
    gate = SendAdmission(0.2, lag)
    lag.periodic.start()
    try:
        await asyncio.sleep(LAG_SAMPLE_SECONDS * 3)
        gate.check()  # an idle loop: admitted
        time.sleep(0.5)  # the loop blocked: the sample that was due runs 0.5 s late
        await asyncio.sleep(0.001)  # the overdue sample runs first and records its lateness
        with pytest.raises(Overloaded, match="ms behind"):
            gate.check()
        assert gate.refused == 1

        async def admitted() -> bool:
            try:
                gate.check()
            except Overloaded:
                return False
            return True

        await eventually(admitted, timeout=5, what="the gate admits once the loop has caught up")
    finally:
        await lag.periodic.stop()


def test_a_gate_without_a_limit_admits_whatever_the_lag() -> None:
    lag = LoopLag()
    lag.seconds = 10.0
    SendAdmission(0.0, lag).check()
