"""Scheduled clean-up, run by exactly one process at a time (a lease in PostgreSQL).

Every api process (and legacy) runs this component; only the holder of the
``maintenance:cleanup`` lease works. Every ``CLEANUP_INTERVAL`` it calls
``cleanup_old_process_metrics()`` (7 days), ``cleanup_old_process_events()`` (30 days,
errors kept) and deletes expired idempotency keys, and records a ``maintenance`` event.
When the last run is taken from that event, a new holder (after the old one died) keeps
the schedule instead of running again at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bisnesgpt.config import Settings
from bisnesgpt.coordination.leases import Lease
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.tasks import cancel_and_wait
from bisnesgpt.processes.component import Component
from bisnesgpt.processes.context import ProcessContext

log = logging.getLogger(__name__)

LEASE_NAME = "maintenance:cleanup"
EVENT_TYPE = "maintenance"
CLEANUP_METRICS = "SELECT cleanup_old_process_metrics()"
CLEANUP_EVENTS = "SELECT cleanup_old_process_events()"
EXPIRE_IDEMPOTENCY_KEYS = """
WITH gone AS (
    DELETE FROM idempotency_keys
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT $1))
    RETURNING 1
)
SELECT count(*) FROM gone
"""
SECONDS_SINCE_LAST_RUN = f"""
SELECT EXTRACT(EPOCH FROM (now() - max(timestamp)))::float8
FROM process_events WHERE event_type = '{EVENT_TYPE}'
"""
IDEMPOTENCY_BATCH = 5_000


class MaintenanceComponent(Component):
    name = "maintenance"

    def __init__(self, settings: Settings) -> None:
        self.interval = settings.cleanup_interval / 1000
        # Renew often enough that a live holder never loses the lease; a dead one's expires
        # within three ticks.
        self.tick = min(self.interval, 30.0)
        self.ttl = max(3 * self.tick, 1.0)
        self.lease: Lease | None = None
        self.runs = 0
        self._ctx: ProcessContext | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: ProcessContext) -> None:
        self._ctx = ctx
        self.lease = Lease(ctx.db, LEASE_NAME, f"{ctx.host}:{ctx.pid}:{ctx.process_name}", self.ttl)
        self._task = asyncio.create_task(self._run(), name="maintenance")

    async def drain(self, timeout: float) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def stop(self) -> None:
        await self.drain(0)
        if self.lease is not None:
            await self.lease.release()

    async def _run(self) -> None:
        assert self.lease is not None
        while True:
            try:
                if await self.lease.try_acquire() and await self._due():
                    await self.run_once()
            except BisnesgptError as exc:
                log.warning("maintenance: %s", exc.detail)
            await asyncio.sleep(self.tick)

    async def _due(self) -> bool:
        assert self._ctx is not None
        since = await self._ctx.db.fetchval(SECONDS_SINCE_LAST_RUN)
        return since is None or float(since) >= self.interval

    async def run_once(self) -> dict[str, Any]:
        """One clean-up pass (the caller holds the lease)."""
        assert self._ctx is not None
        assert self.lease is not None
        started = time.monotonic()
        metrics_deleted = await self._ctx.db.fetchval(CLEANUP_METRICS)
        events_deleted = await self._ctx.db.fetchval(CLEANUP_EVENTS)
        keys_deleted = 0
        while True:
            batch = int(await self._ctx.db.fetchval(EXPIRE_IDEMPOTENCY_KEYS, IDEMPOTENCY_BATCH))
            keys_deleted += batch
            if batch < IDEMPOTENCY_BATCH:
                break
        self.runs += 1
        result = {"holder": self.lease.holder, "metricsDeleted": int(metrics_deleted or 0),
                  "eventsDeleted": int(events_deleted or 0), "idempotencyKeysDeleted": keys_deleted,
                  "seconds": round(time.monotonic() - started, 3)}
        await self._ctx.events.record(EVENT_TYPE, result)
        return result
