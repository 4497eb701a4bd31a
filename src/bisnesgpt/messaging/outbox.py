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

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from bisnesgpt.config import Settings
from bisnesgpt.coordination.leases import Lease
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.tasks import cancel_and_wait
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.queues import QUEUES_BY_NAME, QueueProducer
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext

log = logging.getLogger(__name__)

LEASE_NAME = "outbox-reconciler"
LEASE_TTL_SECONDS = 10.0
BATCH_SIZE = 500

REDISPATCHED = Counter("bisnesgpt_outbox_redispatched_total",
                       "Messages the outbox reconciler put (back) into a queue", ["queue", "reason"])

SELECT_UNFINISHED = """
SELECT id, message_id, company_id, phone_index, status, queue_name
FROM messages
WHERE status IN ('queued', 'sending') AND direction = 'outbound'
  AND updated_at < now() - make_interval(secs => $1)
  AND id > $2
ORDER BY id
LIMIT $3
"""


@dataclass(frozen=True)
class Unfinished:
    pk: int
    message_id: str
    company_id: str
    phone_index: int
    status: str
    queue_name: str


@dataclass
class PassReport:
    checked: int = 0
    enqueued: int = 0
    requeued_stalled: int = 0
    full_batch: bool = False


class OutboxReconciler:
    """One reconciliation pass at a time over the unfinished outbound messages."""

    def __init__(self, db: Database, redis: Any, producer: QueueProducer, *, min_age_seconds: float,
                 batch_size: int = BATCH_SIZE) -> None:
        self.db = db
        self.redis = redis
        self.producer = producer
        self.min_age_seconds = min_age_seconds
        self.batch_size = batch_size
        self._cursor = 0

    async def run_pass(self) -> PassReport:
        """Check one batch (resuming after the last one); raises on DB/Redis trouble."""
        rows = await self.db.fetch(SELECT_UNFINISHED, self.min_age_seconds, self._cursor, self.batch_size)
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
            data = {"messageId": item.message_id, "companyId": item.company_id, "phoneIndex": item.phone_index}
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


class OutboxReconcilerComponent(Component):
    """Runs the reconciler in whichever API instance holds the lease."""

    name = "outbox"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.outbox_reconcile_interval / 1000
        self._task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None
        self._reconciler: OutboxReconciler | None = None
        self.last_pass_at: float | None = None
        self.last_error: str | None = None
        self.total_enqueued = 0
        self._ctx: ProcessContext | None = None

    async def start(self, ctx: ProcessContext) -> None:
        self._ctx = ctx
        holder = f"{ctx.process_name}@{socket.gethostname()}:{os.getpid()}"
        self._lease = Lease(ctx.db, LEASE_NAME, holder, LEASE_TTL_SECONDS)
        self._reconciler = OutboxReconciler(ctx.db, ctx.redis, ctx.queues,
                                            min_age_seconds=self.settings.outbox_min_age / 1000)
        self._task = asyncio.create_task(self._run(), name="outbox-reconciler")

    async def _run(self) -> None:
        assert self._lease is not None
        assert self._reconciler is not None
        assert self._ctx is not None
        while True:
            report = PassReport()
            if await self._lease.try_acquire():
                try:
                    report = await self._reconciler.run_pass()
                    self.last_pass_at = time.time()
                    self.last_error = None
                    moved = report.enqueued + report.requeued_stalled
                    if moved:
                        self.total_enqueued += moved
                        await self._ctx.events.record("outbox_redispatch", {
                            "enqueued": report.enqueued, "requeuedStalled": report.requeued_stalled,
                            "checked": report.checked}, "warning")
                except (BisnesgptError, RedisError, OSError, TimeoutError) as exc:
                    detail = exc.detail if isinstance(exc, BisnesgptError) else (str(exc) or type(exc).__name__)
                    if detail != self.last_error:
                        log.warning("outbox: pass failed: %s (retrying)", detail)
                    self.last_error = detail
            if not report.full_batch:
                await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._lease is not None:
            await self._lease.release()

    async def checks(self) -> dict[str, Check]:
        held = self._lease is not None and self._lease.held
        return {"outbox": Check(True, "reconciling" if held else "standby (another instance holds the lease)",
                                {"leaseHeld": held, "lastPassAt": self.last_pass_at, "lastError": self.last_error,
                                 "redispatched": self.total_enqueued})}
