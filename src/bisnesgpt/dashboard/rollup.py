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
from datetime import timedelta

from bisnesgpt.db.pool import Database

log = logging.getLogger(__name__)

LEASE_NAME = "dashboard:metrics-rollup"
ENGINES = ("wwebjs", "meta")
BACKFILL_MINUTES = 60
MAX_MINUTES = 24 * 60
# A minute is rolled up this long after it ended (transactions finishing late still count).
SETTLE_SECONDS = 5

ROLLUP_WINDOW = f"""
SELECT coalesce(max(timestamp) + interval '1 minute',
                date_trunc('minute', now()) - interval '{BACKFILL_MINUTES} minutes') AS start_at,
       date_trunc('minute', now() - interval '{SETTLE_SECONDS} seconds') AS end_at
FROM process_metrics WHERE metric_name = 'messages_sent'
"""
INSERT_SENT = """
WITH minutes AS (
    SELECT generate_series($1::timestamptz, $2::timestamptz - interval '1 minute', interval '1 minute') AS minute
), sent AS (
    SELECT date_trunc('minute', sent_at) AS minute, provider, count(*) AS n
    FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound'
    GROUP BY 1, 2
), engines AS (
    SELECT unnest($4::text[]) AS provider UNION SELECT DISTINCT provider FROM sent
)
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp, metadata)
SELECT $3, 'messages_sent', coalesce(s.n, 0), 'gauge', m.minute, jsonb_build_object('provider', e.provider)
FROM minutes m CROSS JOIN engines e LEFT JOIN sent s ON s.minute = m.minute AND s.provider = e.provider
"""
INSERT_LATENCY = """
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp, metadata)
SELECT $3, q.name, q.value, 'gauge', l.minute, jsonb_build_object('provider', l.provider)
FROM (
    SELECT date_trunc('minute', sent_at) AS minute, provider,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at) * 1000) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at) * 1000) AS p99
    FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound'
    GROUP BY 1, 2
) l
CROSS JOIN LATERAL (VALUES ('send_latency_p50_ms', l.p50), ('send_latency_p99_ms', l.p99)) AS q(name, value)
"""
# Failures: messages failed in the window, plus failures an operator has re-queued since
# (their error moved to the re-queue history row; see requeue.py). ($1, $2) = the window.
FAILURES = """
SELECT failed_at, coalesce(error_code, 'UNKNOWN') AS code, provider
FROM messages WHERE failed_at >= $1 AND failed_at < $2 AND direction = 'outbound'
UNION ALL
SELECT (h.detail->'previousError'->>'failedAt')::timestamptz,
       coalesce(h.detail->'previousError'->>'code', 'UNKNOWN'), m.provider
FROM message_status_history h JOIN messages m ON m.id = h.message_pk
WHERE h.source = 'operator' AND h.to_status = 'queued' AND h.created_at >= $1
  AND (h.detail->'previousError'->>'failedAt')::timestamptz >= $1
  AND (h.detail->'previousError'->>'failedAt')::timestamptz < $2
"""
INSERT_FAILED = f"""
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp, metadata)
SELECT $3, 'messages_failed', count(*), 'gauge', date_trunc('minute', f.failed_at),
       jsonb_build_object('code', f.code, 'provider', f.provider)
FROM ({FAILURES}) f
GROUP BY date_trunc('minute', f.failed_at), f.code, f.provider
"""


class MetricsRollup:
    """The rollup pass; the dashboard component runs it under a lease (``LeasedLoop``)."""

    def __init__(self, db: Database, process_name: str) -> None:
        self.db = db
        self.process_name = process_name
        self.minutes_rolled = 0

    async def run_once(self) -> int:
        """Roll up every complete minute since the watermark; returns how many minutes."""
        async with self.db.transaction() as conn:
            window = await conn.fetchrow(ROLLUP_WINDOW)
            assert window is not None
            start, end = window["start_at"], window["end_at"]
            minutes = int((end - start).total_seconds() // 60)
            if minutes <= 0:
                return 0
            if minutes > MAX_MINUTES:
                start = end - timedelta(minutes=MAX_MINUTES)
                minutes = MAX_MINUTES
            args = (start, end, self.process_name)
            await conn.execute(INSERT_SENT, *args, list(ENGINES))
            await conn.execute(INSERT_LATENCY, *args)
            await conn.execute(INSERT_FAILED, *args)
        self.minutes_rolled += minutes
        log.debug("metrics rollup: %d minute(s) up to %s", minutes, end.isoformat())
        return minutes
