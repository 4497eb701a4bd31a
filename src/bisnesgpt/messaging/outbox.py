"""The outbox reconciler: every durable message that should be in a queue is in it.

PostgreSQL is the source of truth, Redis the dispatch mechanism. The reconciler walks the
unfinished outbound rows (``queued``/``sending``, untouched for ``OUTBOX_MIN_AGE``) and
asks Redis, in one pipeline per batch, whether each one's job exists:

* no job → add it (jobId = message id): the API stored the row while Redis was down or
  died between commit and enqueue, or Redis restarted without its data;
* a job that failed because it stalled too often while the message is not final → remove
  it and add it again (a worker crash loop must not strand the message);
* any other job (waiting, delayed, active) → nothing to do.

Adding twice is harmless: BullMQ ignores an add for an existing jobId, and the worker
refuses to send a message already past ``sending``. Exactly one process reconciles at a
time (PostgreSQL lease ``outbox-reconciler``). Expired idempotency keys are the maintenance
job's (``health/maintenance.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Counter

from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging.node_jobs import send_job_data
from bisnesgpt.messaging.queues import QUEUES_BY_NAME, QueueProducer
from bisnesgpt.messaging.states import MessageState

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.messaging")

BATCH_SIZE = 500

REDISPATCHED = Counter("bisnesgpt_outbox_redispatched_total",
                       "Messages the outbox reconciler put (back) into a queue", ["queue", "reason"])


@dataclass(frozen=True)
class Unfinished:
    """An outbound message still queued or sending: what the reconciler checks in Redis."""

    pk: int
    message_id: str
    company_id: str
    phone_index: int
    status: MessageState
    queue_name: str


@dataclass
class PassReport:
    """What one pass did: messages checked, enqueued (no job), re-added (a stalled, failed job)."""

    checked: int = 0
    enqueued: int = 0
    requeued_stalled: int = 0
    full_batch: bool = False


class OutboxReconciler:
    """One reconciliation pass at a time over the unfinished outbound messages."""

    def __init__(self, db: Database, redis: aioredis.Redis, producer: QueueProducer, *, min_age_seconds: float,
                 batch_size: int = BATCH_SIZE) -> None:
        self.db = db
        self.redis = redis
        self.producer = producer
        self.min_age_seconds = min_age_seconds
        self.batch_size = batch_size
        self._cursor = 0

    async def run_pass(self) -> PassReport:
        """Check one batch (resuming after the last one); raises on DB/Redis trouble."""
        rows = await self.db.fetch(SQL.select_unfinished_outbound, self.min_age_seconds, self._cursor, self.batch_size)
        report = PassReport(checked=len(rows), full_batch=len(rows) == self.batch_size)
        self._cursor = rows[-1]["id"] if report.full_batch else 0
        candidates = [Unfinished(r["id"], r["message_id"], r["company_id"], r["phone_index"], r["status"],
                                 r["queue_name"]) for r in rows if r["queue_name"] in QUEUES_BY_NAME]
        if not candidates:
            return report
        prefix = self.producer.prefix
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in candidates:
                key = f"{prefix}:{item.queue_name}:{item.message_id}"
                pipe.exists(key)
                pipe.zscore(f"{prefix}:{item.queue_name}:failed", item.message_id)
                pipe.hget(key, "failedReason")
            answers = await pipe.execute()
        for index, item in enumerate(candidates):
            exists, failed_score, failed_reason = answers[3 * index: 3 * index + 3]
            spec = QUEUES_BY_NAME[item.queue_name]
            data = send_job_data(item)
            if not exists:
                await self.producer.add(spec, item.message_id, data)
                report.enqueued += 1
                REDISPATCHED.labels(spec.name, "missing").inc()
                log.info("outbox: enqueued %s message %s to %s (no job in Redis)", item.status, item.message_id,
                         spec.name)
            elif failed_score is not None and "stalled" in str(failed_reason or "").lower():
                await self.producer.queue(spec.name).remove(item.message_id)
                await self.producer.add(spec, item.message_id, data)
                report.requeued_stalled += 1
                REDISPATCHED.labels(spec.name, "stalled").inc()
                log.warning("outbox: re-dispatched %s message %s (its job failed: %s)", item.status, item.message_id,
                            failed_reason)
        return report
