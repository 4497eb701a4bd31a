"""Lease epochs as fencing tokens: a write guarded by a tenure that is over never happens."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bisnesgpt.core.errors import LeaseLost
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.leases import SessionLeases

pytestmark = pytest.mark.integration
NAME = "wwebjs:session:fence:0"


async def _expire(db: Database) -> None:
    await db.execute("UPDATE process_leases SET expires_at = now() - interval '1 second' WHERE name = $1", NAME)


async def test_each_tenure_has_its_own_epoch_and_only_the_live_one_passes_the_fence(db: Database) -> None:
    a = SessionLeases(db, "wwebjs@host-a:1:aaaaaa", 30)
    b = SessionLeases(db, "wwebjs@host-b:2:bbbbbb", 30)
    assert await a.acquire([NAME]) == {NAME}
    first = a.epochs[NAME]
    await a.acquire([NAME])
    assert a.epochs[NAME] == first  # a renewal keeps the tenure
    assert await b.acquire([NAME]) == set() and NAME not in b.epochs
    async with db.transaction() as conn:
        await a.fence(conn, NAME)

    await _expire(db)  # a frozen (SIGSTOP) a: its lease ran out, b takes over
    assert await b.acquire([NAME]) == {NAME}
    assert b.epochs[NAME] > first
    with pytest.raises(LeaseLost):  # a still believes it holds the lease (its clock was frozen too)
        async with db.transaction() as conn:
            await a.fence(conn, NAME)
    async with db.transaction() as conn:
        await b.fence(conn, NAME)

    await b.release([NAME])
    with pytest.raises(LeaseLost):  # released: not even its own clock lets b act
        async with db.transaction() as conn:
            await b.fence(conn, NAME)
    assert await a.acquire([NAME]) == {NAME}
    assert a.epochs[NAME] > first  # the same holder again, but a new tenure: the old token is void


async def test_a_takeover_waits_for_a_fenced_write_to_commit(db: Database, database_url: str) -> None:
    a = SessionLeases(db, "wwebjs@host-a:1:aaaaaa", 30)
    await a.acquire([NAME])
    await db.execute("UPDATE process_leases SET expires_at = now() + interval '300 milliseconds' WHERE name = $1",
                     NAME)
    other = await asyncpg.connect(database_url)
    try:
        async with db.transaction() as conn:
            await a.fence(conn, NAME)
            await asyncio.sleep(0.6)  # the lease expires while a's fenced write is still open
            takeover = asyncio.create_task(other.fetch(
                "UPDATE process_leases SET holder = 'wwebjs@host-b:2:bbbbbb', expires_at = now() + interval '30 s' "
                "WHERE name = $1 AND expires_at < now() RETURNING name", NAME))
            await asyncio.sleep(0.3)
            assert not takeover.done()  # blocked on the row a's write holds
        assert [r["name"] for r in await takeover] == [NAME]  # then it goes through
    finally:
        await other.close()
