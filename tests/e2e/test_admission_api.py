"""Admission control through a real api process: overload is refused with 503 + Retry-After, and
nothing refused is stored while everything answered 202 is.

The pool gate: the api runs with a 3-connection pool and ADMISSION_POOL_WAIT=200 ms (the
in-flight gate off, so that the pool is what refuses); a separate connection
locks the ``messages`` table, so the first sends hold the pool's connections on their INSERT
(an overloaded database, as a slow disk or a burst would make it). Later sends find the pool
busy and are refused after the wait — not queued behind the lock. Once the lock is released
the held sends commit and answer 202.

The in-flight gate: with ADMISSION_MAX_IN_FLIGHT=2 (the pool gate off, a large pool), the two
sends held by the same lock are all the process admits; the others are refused at once, counted
in ``/metrics``, and stored nowhere.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.pipeline import ApiServer, Tenant, seed_tenant
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
SENDS = 12


async def test_a_busy_pool_answers_503_with_retry_after_and_stores_only_what_got_202(
        tmp_path: Path, db: Database, database_url: str, redis_url: str) -> None:
    tenant = await seed_tenant(db, "admitco", {0: "wwebjs"})
    answers, _, _ = await overloaded_api(ApiServer(tmp_path, database_url, redis_url, DATABASE_POOL_API_MAX="3",
                                                   ADMISSION_POOL_WAIT="200", ADMISSION_MAX_IN_FLIGHT="0"),
                                         tenant, database_url, refused_at_least=1)
    await assert_refused_problems_and_only_202s_stored(db, tenant, answers)


async def test_sends_past_the_in_flight_limit_are_refused_at_once_and_counted(
        tmp_path: Path, db: Database, database_url: str, redis_url: str) -> None:
    tenant = await seed_tenant(db, "inflightco", {0: "wwebjs"})
    answers, refused_while_locked, metrics = await overloaded_api(
        ApiServer(tmp_path, database_url, redis_url, DATABASE_POOL_API_MAX="20", ADMISSION_POOL_WAIT="0",
                  ADMISSION_MAX_IN_FLIGHT="2"), tenant, database_url, refused_at_least=SENDS - 2)
    # Exactly the two held sends were admitted; every other was refused while they were held.
    assert refused_while_locked == SENDS - 2
    assert sorted(a.status_code for a in answers) == [202] * 2 + [503] * (SENDS - 2)
    assert f'bisnesgpt_sends_refused_total{{reason="in_flight"}} {float(SENDS - 2)}' in metrics
    assert all("ADMISSION_MAX_IN_FLIGHT" in a.json()["detail"] for a in answers if a.status_code == 503)
    await assert_refused_problems_and_only_202s_stored(db, tenant, answers)


async def overloaded_api(server: ApiServer, tenant: Tenant, database_url: str,
                         refused_at_least: int) -> tuple[list[httpx.Response], int, str]:
    """Start ``server``, overload it (``sends_while_messages_locked``), read its ``/metrics``, stop it."""
    await server.start()
    try:
        answers, refused_while_locked = await sends_while_messages_locked(server, tenant, database_url,
                                                                          refused_at_least)
        async with httpx.AsyncClient(base_url=server.url) as client:
            metrics = (await client.get("/metrics")).text
    finally:
        server.stop()
    return answers, refused_while_locked, metrics


async def sends_while_messages_locked(server: ApiServer, tenant: Tenant, database_url: str,
                                      refused_at_least: int) -> tuple[list[httpx.Response], int]:
    """``SENDS`` concurrent sends while ``messages`` is locked; the lock goes once enough are refused.

    Returns every answer and how many were refused before the lock was released.
    """
    locker = await asyncpg.connect(database_url)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers, timeout=60) as client:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            sends = [asyncio.create_task(client.post(f"/api/v2/messages/text/{tenant.company_id}/60123456789",
                                                     json={"message": f"m{i}"})) for i in range(SENDS)]

            def refused() -> bool:
                return sum(1 for t in sends if t.done() and t.result().status_code == 503) >= refused_at_least

            # While the lock holds, sends are refused, not queued behind it.
            await eventually(refused, timeout=60, what=f"{refused_at_least} sends refused while the lock holds")
            refused_while_locked = sum(1 for t in sends if t.done() and t.result().status_code == 503)
            await transaction.rollback()
            return list(await asyncio.gather(*sends)), refused_while_locked
    finally:
        await locker.close()


async def assert_refused_problems_and_only_202s_stored(db: Database, tenant: Tenant,
                                                       answers: list[httpx.Response]) -> None:
    """Every answer is 202 or a 503 problem with Retry-After; exactly the 202s are stored."""
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
