"""The shared worker helper over real Redis (BullMQ) and PostgreSQL.

The engine here is a small recording engine defined in the test: what is under test is
the helper's contract (load, skip past-sending, defer, retry, fail, record Node jobs).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from bisnesgpt.core.errors import DatabaseUnavailable, QueueUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import QueueProducer, QueueSpec
from bisnesgpt.messaging.send_processor import SendJobProcessor, SendReceipt
from bisnesgpt.messaging.send_store import PgSendStore
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


@dataclass
class ScriptedEngine:
    """Sends succeed unless a script says otherwise for the n-th call of a message."""

    provider: str = "test"
    script: dict[str, list[Exception | None]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    defer_first: set[str] = field(default_factory=set)

    async def before_send(self, message: store.MessageRecord) -> None:
        if message.message_id in self.defer_first:
            self.defer_first.discard(message.message_id)
            raise DeferSend("not yet", delay_ms=50)

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        n = self.calls.get(message.message_id, 0)
        self.calls[message.message_id] = n + 1
        steps = self.script.get(message.message_id, [])
        if n < len(steps) and steps[n] is not None:
            raise steps[n]  # type: ignore[misc]
        self.sent.append(message.message_id)
        return SendReceipt(external_id=f"ext-{message.message_id}")


def spec(name: str) -> QueueSpec:
    return QueueSpec(name, "send-message", 3, {"type": "fixed", "delay": 20}, 4, "test")


async def new_message(db: Database, queue: QueueSpec, message_id: str | None = None) -> store.MessageRecord:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=message_id or str(uuid.uuid4()), company_id="acme", phone_index=0, provider="test",
            connection_type="wwebjs", chat_id="60123456789@c.us", message_type="text",
            payload={"to": "60123456789", "type": "text", "text": {"body": "hi"}}, queue_name=queue.name,
            process_name="test", content="hi",
        ))
    assert record is not None
    return record


async def wait_status(db: Database, message_id: str, status: str, timeout: float = 15) -> store.MessageRecord:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with db.connection() as conn:
            record = await store.load_message(conn, message_id, "acme")
        if record is not None and record.status == status:
            return record
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{message_id} is {record.status if record else None}, wanted {status}")
        await asyncio.sleep(0.05)


async def history(db: Database, record: store.MessageRecord) -> list[str]:
    rows = await db.fetch("SELECT to_status FROM message_status_history WHERE message_pk = $1 ORDER BY id", record.id)
    return [r["to_status"] for r in rows]


@pytest.fixture
async def harness(db: Database, redis_url: str):  # type: ignore[no-untyped-def]
    queue = spec(f"test-{uuid.uuid4().hex[:8]}")
    engine = ScriptedEngine()
    producer = QueueProducer(redis_url)
    worker = QueueWorker(redis_url, queue, SendJobProcessor(PgSendStore(db, producer), engine, queue,
                                                            process_name="test"))
    await worker.start()
    yield queue, engine, producer, worker
    await worker.close(timeout=5)
    await producer.close()


async def test_sends_once_and_records_state_history(db: Database, harness: Any) -> None:
    queue, engine, producer, _worker = harness
    record = await new_message(db, queue)
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    sent = await wait_status(db, record.message_id, "sent")
    assert sent.external_id == f"ext-{record.message_id}"
    assert sent.attempts == 1
    assert await history(db, record) == ["queued", "sending", "sent"]
    events = await db.fetch("SELECT data FROM tenant_events WHERE type = 'message.status' ORDER BY created_at")
    assert [e["data"]["status"] for e in events] == ["queued", "sent"]
    # A second job for the same message (a duplicate run) must not send again.
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    await asyncio.sleep(0.5)
    assert engine.sent == [record.message_id]


async def test_permanent_error_fails_with_code_and_title(db: Database, harness: Any) -> None:
    queue, engine, producer, _worker = harness
    record = await new_message(db, queue)
    engine.script[record.message_id] = [PermanentSendError("bad number", code="131026", title="Message undeliverable")]
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    failed = await wait_status(db, record.message_id, "failed")
    assert (failed.error_code, failed.error_title) == ("131026", "Message undeliverable")
    assert engine.calls[record.message_id] == 1
    job = await producer.queue(queue.name).getJob(record.message_id)
    assert job is not None and await job.isFailed()


async def test_retryable_errors_use_all_attempts_then_fail(db: Database, harness: Any) -> None:
    queue, engine, producer, _worker = harness
    ok = await new_message(db, queue)
    doomed = await new_message(db, queue)
    engine.script[ok.message_id] = [RetryableSendError("timeout", code="131000"), None]
    engine.script[doomed.message_id] = [RetryableSendError("down", code="131000")] * 3
    for record in (ok, doomed):
        await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    assert (await wait_status(db, ok.message_id, "sent")).attempts == 2
    failed = await wait_status(db, doomed.message_id, "failed")
    assert failed.attempts == 3 and failed.error_code == "131000"
    assert engine.calls[doomed.message_id] == 3


async def test_deferred_send_keeps_its_attempts(db: Database, harness: Any) -> None:
    queue, engine, producer, _worker = harness
    record = await new_message(db, queue)
    engine.defer_first.add(record.message_id)
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    sent = await wait_status(db, record.message_id, "sent")
    assert sent.attempts == 1
    assert await history(db, record) == ["queued", "sending", "sent"]


async def test_original_node_job_format_is_recorded_then_sent(db: Database, harness: Any, redis_url: str) -> None:
    queue, engine, _producer, _worker = harness
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
    await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                     "VALUES ('acme', 0, 'wwebjs')")
    import redis.asyncio as aioredis
    from bullmq import Queue

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    node_queue = Queue(queue.name, {"connection": client})
    await node_queue.add("send-message", {"companyId": "acme", "phoneIndex": 0,
                                          "messageData": {"to": "60198765432@c.us", "message": "from node"}},
                         {"jobId": "node-job-1"})
    await node_queue.close()
    message_id = await eventually(
        lambda: db.fetchval("SELECT message_id FROM messages WHERE external_ref = 'node-job-1'"),
        timeout=15, what="the Node job recorded")
    sent = await wait_status(db, message_id, "sent")
    assert sent.source == "node-job" and sent.content == "from node"
    assert (sent.chat_id, sent.queue_name, sent.external_ref) == ("60198765432@c.us", queue.name, "node-job-1")
    assert json.loads(json.dumps(sent.raw))["messageData"]["message"] == "from node"
    assert engine.sent == [message_id]


async def test_provider_given_delays_still_count_against_the_attempts(db: Database, harness: Any) -> None:
    queue, engine, producer, _worker = harness
    record = await new_message(db, queue)
    engine.script[record.message_id] = [RetryableSendError("slow down", code="130429", retry_after_ms=20)] * 5
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    failed = await wait_status(db, record.message_id, "failed")
    assert failed.error_code == "130429"
    assert engine.calls[record.message_id] == queue.attempts == 3


async def test_an_outage_costs_no_attempt(db: Database, harness: Any) -> None:
    """PostgreSQL/Redis unavailable more times than the job has attempts: delayed, then sent."""
    queue, engine, producer, _worker = harness
    record = await new_message(db, queue)
    engine.script[record.message_id] = [DatabaseUnavailable("PostgreSQL unavailable: restarting"),
                                        QueueUnavailable("Redis unavailable"),
                                        DatabaseUnavailable("PostgreSQL unavailable: restarting"),
                                        DatabaseUnavailable("PostgreSQL unavailable: restarting")]
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    sent = await wait_status(db, record.message_id, "sent", timeout=30)
    assert sent.external_id == f"ext-{record.message_id}"
    assert engine.calls[record.message_id] == 5 > queue.attempts
    job = await producer.queue(queue.name).getJob(record.message_id)
    assert job is None  # completed (removeOnComplete), not failed


@dataclass
class SlowEngine:
    provider: str = "test"
    started: list[str] = field(default_factory=list)

    async def before_send(self, message: store.MessageRecord) -> None:
        return None

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        self.started.append(message.message_id)
        await asyncio.sleep(30)
        return SendReceipt(external_id=f"ext-{message.message_id}")


async def test_close_is_bounded_and_hands_unfinished_jobs_back(db: Database, redis_url: str) -> None:
    """Jobs still running at the close deadline go back to wait at once: none left active/stalled."""
    queue = spec(f"test-{uuid.uuid4().hex[:8]}")
    engine = SlowEngine()
    producer = QueueProducer(redis_url)
    worker = QueueWorker(redis_url, queue, SendJobProcessor(PgSendStore(db, producer), engine, queue,
                                                            process_name="test"))
    client = redis_client(redis_url)
    try:
        await worker.start()
        records = [await new_message(db, queue) for _ in range(6)]
        for record in records:
            await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
        deadline = asyncio.get_running_loop().time() + 15
        while len(engine.started) < queue.concurrency:
            assert asyncio.get_running_loop().time() < deadline, engine.started
            await asyncio.sleep(0.05)
        began = asyncio.get_running_loop().time()
        await worker.close(timeout=0.5)
        took = asyncio.get_running_loop().time() - began
        assert took < 5, took  # bullmq's own close() would wait the 30 s sends out
        prefix = f"bull:{queue.name}"
        assert await client.llen(f"{prefix}:active") == 0
        assert await client.scard(f"{prefix}:stalled") == 0
        waiting = await client.lrange(f"{prefix}:wait", 0, -1)
        assert sorted(w.decode() if isinstance(w, bytes) else w for w in waiting) == sorted(
            r.message_id for r in records)
        job = await producer.queue(queue.name).getJob(records[0].message_id)
        assert job is not None and job.attemptsMade == 0
    finally:
        await client.aclose()
        await producer.close()


@dataclass
class PausingEngine:
    provider: str = "test"
    seconds: float = 2.5
    started: list[str] = field(default_factory=list)

    async def before_send(self, message: store.MessageRecord) -> None:
        return None

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        self.started.append(message.message_id)
        await asyncio.sleep(self.seconds)
        return SendReceipt(external_id=f"ext-{message.message_id}")


async def test_a_job_draining_at_close_keeps_its_lock_and_completes(db: Database, redis_url: str) -> None:
    """Closing stops fetching, not lock renewal: a job longer than the lock still finishes cleanly."""
    queue = spec(f"test-{uuid.uuid4().hex[:8]}")
    engine = PausingEngine()
    producer = QueueProducer(redis_url)
    worker = QueueWorker(redis_url, queue, SendJobProcessor(PgSendStore(db, producer), engine, queue,
                                                            process_name="test"),
                         lock_duration_ms=1000, stalled_interval_ms=500)
    client = redis_client(redis_url)
    try:
        await worker.start()
        record = await new_message(db, queue)
        await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
        deadline = asyncio.get_running_loop().time() + 15
        while not engine.started:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        await worker.close(timeout=10)  # the send takes 2.5 s: 2.5 lock durations
        sent = await wait_status(db, record.message_id, "sent", timeout=1)
        assert sent.external_id == f"ext-{record.message_id}"
        prefix = f"bull:{queue.name}"
        assert await client.llen(f"{prefix}:active") == 0
        assert await producer.queue(queue.name).getJob(record.message_id) is None  # completed and removed
    finally:
        await client.aclose()
        await producer.close()


async def test_free_slots_fetch_one_job_at_a_time_and_a_parked_wait_still_sees_new_jobs(
        db: Database, redis_url: str) -> None:
    """Meta's worker has 310 slots: an arriving job must not set off one fetch per free slot,
    and while jobs run, the one blocking wait parked for the queue must still pick new jobs up."""
    queue = spec(f"test-{uuid.uuid4().hex[:8]}")
    engine = PausingEngine(seconds=30)
    producer = QueueProducer(redis_url)
    worker = QueueWorker(redis_url, queue, SendJobProcessor(PgSendStore(db, producer), engine, queue,
                                                            process_name="test"),
                         concurrency=310)
    try:
        await worker.start()
        fetches = 0
        move_to_active = worker._worker.moveToActive

        async def counted(token: str) -> Any:
            nonlocal fetches
            fetches += 1
            return await move_to_active(token)

        worker._worker.moveToActive = counted
        await asyncio.sleep(0.5)  # idle: parked in the blocking wait
        records = [await new_message(db, queue) for _ in range(20)]
        for n, record in enumerate(records, start=1):
            # Each job arrives while the previous ones are still sending (30 s each).
            await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
            deadline = asyncio.get_running_loop().time() + 10
            while len(engine.started) < n:
                assert asyncio.get_running_loop().time() < deadline, f"job {n} not picked up while {n - 1} run"
                await asyncio.sleep(0.02)
        # About 3 per job here (the wait's pop, one that finds nothing, drain-delay wake-ups);
        # bullmq's stock loop made 2,712 for these 20 (one per free slot per arrival).
        assert fetches <= 5 * len(records), fetches
        burst = [await new_message(db, queue) for _ in range(40)]
        for record in burst:
            await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
        deadline = asyncio.get_running_loop().time() + 15
        while len(engine.started) < len(records) + len(burst):  # a backlog fills the free slots
            assert asyncio.get_running_loop().time() < deadline, len(engine.started)
            await asyncio.sleep(0.02)
    finally:
        await worker.close(timeout=0.5)
        await producer.close()
