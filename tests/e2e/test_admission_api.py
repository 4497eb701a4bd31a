"""Admission control through a real api process: overload is refused with 503 + Retry-After, and
nothing refused is stored while everything answered 202 is.

The api runs with a 3-connection pool and ADMISSION_POOL_WAIT=200 ms; a separate connection
locks the ``messages`` table, so the first sends hold the pool's connections on their INSERT
(an overloaded database, as a slow disk or a burst would make it). Later sends find the pool
busy and are refused after the wait — not queued behind the lock. Once the lock is released
the held sends commit and answer 202.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.pipeline import ApiServer, seed_tenant
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
SENDS = 12


async def test_a_busy_pool_answers_503_with_retry_after_and_stores_only_what_got_202(
        tmp_path: Path, db: Database, database_url: str, redis_url: str) -> None:
    tenant = await seed_tenant(db, "admitco", {0: "wwebjs"})
    server = await ApiServer(tmp_path, database_url, redis_url, DATABASE_POOL_API_MAX="3",
                             ADMISSION_POOL_WAIT="200").start()
    locker = await asyncpg.connect(database_url)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers, timeout=60) as client:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            sends = [asyncio.create_task(client.post(f"/api/v2/messages/text/{tenant.company_id}/60123456789",
                                                     json={"message": f"m{i}"})) for i in range(SENDS)]

            def refused() -> list[httpx.Response]:
                return [t.result() for t in sends if t.done() and t.result().status_code == 503]

            # While the lock holds, the pool is busy: some sends are refused, not queued behind it.
            await eventually(refused, timeout=60, what="a send refused while the pool is busy")
            await transaction.rollback()
            answers = await asyncio.gather(*sends)
    finally:
        await locker.close()
        server.stop()

    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {202, 503}, statuses
    overloaded = [a for a in answers if a.status_code == 503]
    accepted = [a for a in answers if a.status_code == 202]
    assert overloaded and accepted, statuses
    for answer in overloaded:
        problem = answer.json()
        assert problem["type"].endswith("overloaded") and "Retry-After" in answer.headers, problem
        assert "retry" in problem["detail"].lower(), problem
    stored = {r["message_id"] for r in await db.fetch(
        "SELECT message_id FROM messages WHERE company_id = $1", tenant.company_id)}
    assert stored == {a.json()["messageId"] for a in accepted}
