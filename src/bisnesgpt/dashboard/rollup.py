"""Per-minute message metrics into ``process_metrics``, for the dashboard's charts.

Every ``DASHBOARD_ROLLUP_INTERVAL_MS`` the holder of the ``dashboard:metrics-rollup`` lease
(one api process at a time) counts, for each complete minute not rolled up yet (at most
the last day; the first run backfills an hour), from ``messages``:

* ``messages_sent``        — outbound messages that reached ``sent`` that minute, per engine
  (``metadata.provider``; a row per engine every minute, zero included);
* ``messages_failed``      — outbound messages that failed that minute, per provider error
  code (``metadata.code``, ``metadata.provider``), including failures an operator has since
  re-queued (their error is kept in the re-queue's history row);
* ``send_latency_p50_ms`` / ``send_latency_p99_ms`` — accept (``created_at``) → ``sent_at``
  of the messages sent that minute, per engine.

Rows are stamped with the minute they describe. The last ``messages_sent`` row is the
watermark, so a new lease holder continues where the old one stopped.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import asyncpg

from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.dashboard")

LEASE_NAME = "dashboard:metrics-rollup"
ENGINES = ("wwebjs", "meta")
BACKFILL_MINUTES = 60
MAX_MINUTES = 24 * 60
# A minute is rolled up this long after it ended (transactions finishing late still count).
SETTLE_SECONDS = 5.0


class MetricsRollup:
    """The rollup pass; the dashboard component runs it under a lease (``LeasedLoop``)."""

    def __init__(self, db: Database, process_name: str) -> None:
        self.db = db
        self.process_name = process_name
        self.minutes_rolled = 0

    async def run_once(self) -> int:
        """Roll up every complete minute since the watermark; returns how many minutes."""
        async with self.db.transaction() as conn:
            window = await conn.fetchrow(SQL.rollup_window, BACKFILL_MINUTES, SETTLE_SECONDS)
            assert window is not None
            start, end = window["start_at"], window["end_at"]
            minutes = int((end - start).total_seconds() // 60)
            if minutes <= 0:
                return 0
            if minutes > MAX_MINUTES:
                start = end - timedelta(minutes=MAX_MINUTES)
                minutes = MAX_MINUTES
            await conn.execute(SQL.insert_sent_counts, start, end, self.process_name, list(ENGINES))
            await conn.execute(SQL.insert_latencies, start, end, self.process_name)
            await self._insert_failures(conn, start, end)
        self.minutes_rolled += minutes
        log.debug("metrics rollup: %d minute(s) up to %s", minutes, end.isoformat())
        return minutes

    async def _insert_failures(self, conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
        """``messages_failed`` per minute, error code and provider (re-queued failures included)."""
        rows = await conn.fetch(SQL.failures_per_minute, start, end)
        if rows:
            await conn.execute(SQL.insert_failed_counts, self.process_name, [r["minute"] for r in rows],
                               [r["code"] for r in rows], [r["provider"] for r in rows], [r["n"] for r in rows])
