"""Fenced send outcomes: an owner that lost its session during the driver call fails nothing.

The shared send worker over real Redis (BullMQ) and PostgreSQL, with the wwebjs fence (the
real ``SessionLeases`` of two processes, ``a`` and ``b``). The engine here stands for the
driver call during which ``a`` was frozen past its lease and ``b`` took the session over:

* the call then fails (a rejection, or the last retry): ``a`` must not mark ``failed`` what
  ``b`` will send — the job is deferred, nothing written, and ``b`` sends it;
* the call went out: ``a`` records ``sent`` all the same (the message did leave);
* while ``a`` still owns the session, its failures are recorded as always.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.leases import SessionLeases
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import PermanentSendError, RetryableSendError
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.messaging.send_processor import OutcomeFence, SendJobProcessor, SendReceipt
from bisnesgpt.messaging.send_store import PgSendStore
from tests.integration.test_worker_helper import ScriptedEngine, history, new_message, spec, wait_status

pytestmark = pytest.mark.integration
LEASE = SessionKey("acme", 0).lease_name  # the session of test_worker_helper's messages


def fence_of(leases: SessionLeases) -> OutcomeFence:
    """The wwebjs outcome fence (``SessionManager.fence_outcome``) of one process's leases."""

    async def fence(conn: asyncpg.Connection, message: store.MessageRecord) -> None:
        await leases.fence(conn, SessionKey(message.company_id, message.phone_index).lease_name)

    return fence


@dataclass
class TakenOverDuringSend(ScriptedEngine):
    """A driver call during which the session goes to ``successor`` (``a`` frozen past its
    lease); then the call fails as scripted, or goes out."""

    db: Database | None = None
    successor: SessionLeases | None = None

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        assert self.db is not None and self.successor is not None
        await self.db.execute("UPDATE process_leases SET expires_at = now() - interval '1 second' WHERE name = $1",
                              LEASE)
        assert await self.successor.acquire([LEASE]) == {LEASE}
        return await super().send(message)


async def _run(db: Database, redis_url: str, engine: ScriptedEngine, leases: SessionLeases, *, attempts: int = 3,
               error: Exception | None = None) -> tuple[QueueWorker, QueueProducer, store.MessageRecord]:
    """``a``'s worker (fenced by ``leases``) on a new queue, and a message whose send raises ``error``."""
    queue = dataclasses.replace(spec(f"fence-{uuid.uuid4().hex[:8]}"), attempts=attempts)
    producer = QueueProducer(redis_url)
    processor = SendJobProcessor(PgSendStore(db, producer), engine, queue, process_name="a",
                                 outcome_fence=fence_of(leases))
    worker = QueueWorker(redis_url, queue, processor)
    await worker.start()
    record = await new_message(db, queue)
    if error is not None:
        engine.script[record.message_id] = [error]
    await producer.add(queue, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
    return worker, producer, record


async def _handed_to_successor(db: Database, redis_url: str, record: store.MessageRecord,
                               successor: SessionLeases) -> None:
    """``b`` runs the deferred job: it sends the message ``a`` could not fail."""
    engine = ScriptedEngine()
    producer = QueueProducer(redis_url)
    queue = spec(record.queue_name or "")
    worker = QueueWorker(redis_url, queue, SendJobProcessor(PgSendStore(db, producer), engine, queue,
                                                            process_name="b", outcome_fence=fence_of(successor)))
    await worker.start()
    try:
        await wait_status(db, record.message_id, "sent")
        assert engine.sent == [record.message_id]
    finally:
        await worker.close(timeout=5)
        await producer.close()


@pytest.mark.parametrize("error", [PermanentSendError("rejected", code="SEND_REJECTED", title="Rejected"),
                                   RetryableSendError("timed out", code="SEND_TIMEOUT")],
                         ids=["permanent", "last-retry"])
async def test_a_failure_after_losing_the_session_is_left_to_the_new_owner(
        db: Database, redis_url: str, error: Exception) -> None:
    a = SessionLeases(db, "wwebjs@host-a:1:aaaaaa", 30)
    b = SessionLeases(db, "wwebjs@host-b:2:bbbbbb", 30)
    assert await a.acquire([LEASE]) == {LEASE}
    engine = TakenOverDuringSend(db=db, successor=b)
    worker, producer, record = await _run(db, redis_url, engine, a, attempts=1, error=error)
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while not engine.calls and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a's outcome is written (or not) by now
        job = await producer.queue(worker.spec.name).getJob(record.message_id)
        assert job is not None and await job.isDelayed(), "the job was not handed back for the new owner"
        assert "failed" not in await history(db, record)
    finally:
        await worker.close(timeout=5)
        await producer.close()
    await _handed_to_successor(db, redis_url, record, b)


async def test_a_send_that_went_out_is_recorded_sent_even_after_losing_the_session(
        db: Database, redis_url: str) -> None:
    a = SessionLeases(db, "wwebjs@host-a:1:aaaaaa", 30)
    b = SessionLeases(db, "wwebjs@host-b:2:bbbbbb", 30)
    assert await a.acquire([LEASE]) == {LEASE}
    engine = TakenOverDuringSend(db=db, successor=b)
    worker, producer, record = await _run(db, redis_url, engine, a)
    try:
        sent = await wait_status(db, record.message_id, "sent")
        assert engine.sent == [record.message_id] and sent.external_id == f"ext-{record.message_id}"
    finally:
        await worker.close(timeout=5)
        await producer.close()


async def test_the_owner_still_records_its_failures(db: Database, redis_url: str) -> None:
    a = SessionLeases(db, "wwebjs@host-a:1:aaaaaa", 30)
    assert await a.acquire([LEASE]) == {LEASE}
    worker, producer, record = await _run(db, redis_url, ScriptedEngine(), a, error=PermanentSendError(
        "bad number", code="131026", title="Message undeliverable"))
    try:
        failed = await wait_status(db, record.message_id, "failed")
        assert (failed.error_code, failed.error_title) == ("131026", "Message undeliverable")
    finally:
        await worker.close(timeout=5)
        await producer.close()
