"""Scheduled clean-up, run by exactly one process at a time (``LeasedLoop`` ``maintenance:cleanup``).

Every api process (and legacy) runs the loop; only the lease holder works. Every
``CLEANUP_INTERVAL`` it calls ``cleanup_old_process_metrics()`` (7 days),
``cleanup_old_process_events()`` (30 days, errors kept), deletes start attempts older
than 30 days, expired idempotency keys and media past ``MEDIA_RETENTION_DAYS`` (their
messages turn ``media_state = expired``), and records a ``maintenance`` event.
When the last run is taken from that event, a new holder (after the old one died) keeps
the schedule instead of running again at once.
"""

from __future__ import annotations

import time
from typing import TypedDict

from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.media.library import MediaLibrary

SQL = load_queries("bisnesgpt.health")

LEASE_NAME = "maintenance:cleanup"
EVENT_TYPE = "maintenance"
IDEMPOTENCY_BATCH = 5_000


class MaintenanceResult(TypedDict):
    """What one pass deleted (also the data of its ``maintenance`` event)."""

    holder: str
    metricsDeleted: int
    eventsDeleted: int
    startsDeleted: int
    idempotencyKeysDeleted: int
    auditEntriesDeleted: int
    mediaObjectsDeleted: int
    mediaBlobsDeleted: int
    seconds: float


class Maintenance:
    """The clean-up pass, due once per ``interval`` across all processes."""

    def __init__(self, db: Database, events: EventRecorder, *, interval: float, holder: str,
                 media: MediaLibrary | None = None) -> None:
        self.db = db
        self.media = media
        self.events = events
        self.interval = interval
        self.holder = holder
        self.runs = 0

    async def run_if_due(self) -> None:
        """A pass, unless the last one (by any process) is younger than ``interval``."""
        since = await self.db.fetchval(SQL.seconds_since_maintenance)
        if since is None or float(since) >= self.interval:
            await self.run_once()

    async def run_once(self) -> MaintenanceResult:
        """One clean-up pass (the caller holds the lease); what it deleted, also recorded as an event."""
        started = time.monotonic()
        metrics_deleted = await self.db.fetchval(SQL.cleanup_metrics)
        events_deleted = await self.db.fetchval(SQL.cleanup_events)
        starts_deleted = await self.db.fetchval(SQL.cleanup_starts)
        audit_deleted = await self.db.fetchval(SQL.cleanup_audit)
        keys_deleted = 0
        while True:
            batch = int(await self.db.fetchval(SQL.expire_idempotency_keys, IDEMPOTENCY_BATCH))
            keys_deleted += batch
            if batch < IDEMPOTENCY_BATCH:
                break
        media = await self.media.expire() if self.media is not None else {"objects": 0, "blobs": 0}
        self.runs += 1
        result: MaintenanceResult = {
            "holder": self.holder, "metricsDeleted": int(metrics_deleted or 0),
            "eventsDeleted": int(events_deleted or 0), "startsDeleted": int(starts_deleted or 0),
            "idempotencyKeysDeleted": keys_deleted, "auditEntriesDeleted": int(audit_deleted or 0),
            "mediaObjectsDeleted": media["objects"], "mediaBlobsDeleted": media["blobs"],
            "seconds": round(time.monotonic() - started, 3)}
        await self.events.record(EVENT_TYPE, result)
        return result
