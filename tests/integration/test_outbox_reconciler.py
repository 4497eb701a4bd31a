"""The outbox reconciler against real PostgreSQL and Redis (BullMQ's key layout)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from bisnesgpt.config import load_settings
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging import store
from bisnesgpt.messaging.component import LEASE_NAME, OutboxReconcilerComponent
from bisnesgpt.messaging.outbox import OutboxReconciler
from bisnesgpt.messaging.queues import WWEBJS, QueueProducer
from bisnesgpt.processes.context import ProcessContext
from tests.support.health import new_context
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


async def queued_message(db: Database, status: str = "queued") -> store.MessageRecord:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs",
            connection_type="wwebjs", chat_id="60123456789@c.us", message_type="text",
            payload={"type": "text", "text": {"body": "x"}}, queue_name=WWEBJS.name, process_name="wwebjs"))
        assert record is not None
        if status != "queued":
            await conn.execute("UPDATE messages SET status = $2 WHERE id = $1", record.id, status)
    return record


def job_data(record: store.MessageRecord) -> dict[str, Any]:
    return {"messageId": record.message_id, "companyId": record.company_id, "phoneIndex": record.phone_index}


async def fail_job(redis: Any, message_id: str, reason: str) -> None:
    """Put a job into BullMQ's failed set as a worker would have left it."""
    prefix = f"bull:{WWEBJS.name}"
    now = int(time.time() * 1000)
    await redis.lrem(f"{prefix}:wait", 0, message_id)
    await redis.zadd(f"{prefix}:failed", {message_id: now})
    await redis.hset(f"{prefix}:{message_id}", mapping={"failedReason": reason, "finishedOn": now})


async def test_a_pass_enqueues_missing_jobs_and_requeues_stalled_ones(db: Database, redis_url: str) -> None:
    producer = QueueProducer(redis_url)
    redis = redis_client(redis_url)
    try:
        missing = await queued_message(db)
        waiting = await queued_message(db)
        stalled = await queued_message(db, "sending")
        refused = await queued_message(db, "sending")
        finished = await queued_message(db, "failed")
        for record in (waiting, stalled, refused, finished):
            await producer.add(WWEBJS, record.message_id, job_data(record))
        await fail_job(redis, stalled.message_id, "job stalled more than allowable limit")
        await fail_job(redis, refused.message_id, "131026: Message undeliverable")
        await fail_job(redis, finished.message_id, "job stalled more than allowable limit")

        reconciler = OutboxReconciler(db, redis, producer, min_age_seconds=0)
        report = await reconciler.run_pass()
        assert (report.checked, report.enqueued, report.requeued_stalled) == (4, 1, 1)
        queue = producer.queue(WWEBJS.name)
        assert await queue.getJobState(missing.message_id) == "waiting"
        assert await queue.getJobState(waiting.message_id) == "waiting"
        assert await queue.getJobState(stalled.message_id) == "waiting"
        assert await queue.getJobState(refused.message_id) == "failed"  # a real failure is the worker's to judge
        assert await queue.getJobState(finished.message_id) == "failed"  # final messages are left alone
        requeued = await queue.getJob(stalled.message_id)
        assert requeued.data == job_data(stalled) and requeued.attemptsMade == 0

        again = await reconciler.run_pass()
        assert (again.enqueued, again.requeued_stalled) == (0, 0)
        # Rows younger than the minimum age are the API's own to enqueue.
        patient = OutboxReconciler(db, redis, producer, min_age_seconds=60)
        assert (await patient.run_pass()).checked == 0
    finally:
        await producer.close()
        await redis.aclose()


async def test_large_backlogs_are_walked_in_batches(db: Database, redis_url: str) -> None:
    producer = QueueProducer(redis_url)
    redis = redis_client(redis_url)
    try:
        records = [await queued_message(db) for _ in range(7)]
        reconciler = OutboxReconciler(db, redis, producer, min_age_seconds=0, batch_size=3)
        reports = [await reconciler.run_pass() for _ in range(3)]
        assert [r.checked for r in reports] == [3, 3, 1]
        assert [r.full_batch for r in reports] == [True, True, False]
        assert sum(r.enqueued for r in reports) == 7
        queue = producer.queue(WWEBJS.name)
        for record in records:
            assert await queue.getJobState(record.message_id) == "waiting"
    finally:
        await producer.close()
        await redis.aclose()


def context(db: Database, database_url: str, redis_url: str, name: str) -> ProcessContext:
    settings = load_settings(outbox_reconcile_interval=100, outbox_min_age=0)
    return new_context(settings, "api", name, database_url=database_url, redis_url=redis_url, db=db)


async def test_exactly_one_instance_reconciles_at_a_time(db: Database, database_url: str, redis_url: str) -> None:
    contexts = [context(db, database_url, redis_url, f"api-{i}") for i in range(2)]
    components = [OutboxReconcilerComponent(ctx) for ctx in contexts]
    try:
        for component in components:
            await component.start()

        async def one_holder() -> bool:
            holders = [(await c.checks())["outbox"].data["leaseHeld"] for c in components]
            return holders.count(True) == 1

        await eventually(one_holder, timeout=10, what="one lease holder")
        for _ in range(10):  # and it stays that way
            assert await one_holder()
            await asyncio.sleep(0.05)
        record = await queued_message(db)
        queue = contexts[0].queues.queue(WWEBJS.name)

        async def enqueued() -> bool:
            return bool(await queue.getJobState(record.message_id) == "waiting")

        await eventually(enqueued, timeout=10, what="reconciler enqueued the message")

        held = [await _held(c) for c in components]
        holder, standby = (components[0], components[1]) if held[0] else (components[1], components[0])
        await holder.stop()
        stopped = time.monotonic()
        await eventually(lambda: _held(standby), timeout=15, what="standby took the lease over")
        took = time.monotonic() - stopped
        assert await db.fetchval("SELECT count(*) FROM process_leases WHERE name = $1", LEASE_NAME) == 1
        print(f"\nlease taken over {took:.2f} s after the holder stopped")
    finally:
        for component in components:
            await component.stop()
        for ctx in contexts:
            await ctx.queues.close()
            await ctx.redis.aclose()


async def _held(component: OutboxReconcilerComponent) -> bool:
    return bool((await component.checks())["outbox"].data["leaseHeld"])
