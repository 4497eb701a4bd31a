"""``webhook_deliveries`` rows: the delivery log, manual retry, replay, and the worker's claims.

A row is ``pending`` (never attempted), ``retrying`` (failed, next attempt scheduled),
``delivered`` (a 2xx) or ``dead`` (failed past the retry horizon). An attempt in flight is
a row with ``locked_until`` in the future; the in-flight rows of an endpoint are its
concurrency. Claims lock endpoint rows ``FOR NO KEY UPDATE SKIP LOCKED`` while they count and
take that endpoint's due rows, so N workers never exceed the per-endpoint bound and never take
the same row; a worker that dies leaves locks that simply expire.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

NOTIFY_CHANNEL = "bisnesgpt_webhook_deliveries"
OPEN_STATUSES = ("pending", "retrying")
STATUSES = ("pending", "retrying", "delivered", "dead")

DELIVERY_COLUMNS = """
    d.id, d.endpoint_id, d.event_id, d.company_id, d.origin, d.status, d.attempts, d.next_attempt_at,
    d.window_started_at, d.locked_by, d.locked_until, d.last_attempt_at, d.last_attempt_by, d.last_status_code,
    d.last_error,
    d.last_response_excerpt, d.delivered_at, d.dead_at, d.created_at, d.updated_at,
    ev.type AS event_type, ev.created_at AS event_created_at
"""
SELECT_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS}
FROM webhook_deliveries d JOIN tenant_events ev ON ev.id = d.event_id
WHERE d.endpoint_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::bigint IS NULL OR d.id < $3)
  AND ($4::text IS NULL OR d.event_id = $4)
ORDER BY d.id DESC
LIMIT $5
"""
SELECT_DELIVERY = f"""
SELECT {DELIVERY_COLUMNS}
FROM webhook_deliveries d JOIN tenant_events ev ON ev.id = d.event_id
WHERE d.id = $1 AND d.endpoint_id = $2
"""
SELECT_EVENT = """
SELECT id, company_id, phone_index, type, data, raw, created_at FROM tenant_events WHERE id = $1
"""
NOTIFY_WORKERS = f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"
# A manual retry opens a fresh retry window (any finished or waiting row; not one in flight).
RETRY_DELIVERY = """
UPDATE webhook_deliveries SET
    status = 'pending', attempts = 0, next_attempt_at = now(), window_started_at = now(),
    delivered_at = NULL, dead_at = NULL
WHERE id = $1 AND endpoint_id = $2 AND (locked_until IS NULL OR locked_until <= now())
RETURNING id
"""
RETRY_DEAD_DELIVERIES = """
UPDATE webhook_deliveries SET
    status = 'pending', attempts = 0, next_attempt_at = now(), window_started_at = now(), dead_at = NULL
WHERE endpoint_id = $1 AND status = 'dead'
"""
# Re-enabling an endpoint resumes what waited while it was disabled, in a fresh window.
RESUME_ENDPOINT_DELIVERIES = """
UPDATE webhook_deliveries SET next_attempt_at = now(), window_started_at = now()
WHERE endpoint_id = $1 AND status IN ('pending', 'retrying')
"""
# Replay: a new delivery row per event of the company in [since, until) that the endpoint's
# filter accepts, skipping events already waiting for this endpoint. Batches continue after
# the last (created_at, id) of the previous one ($6).
REPLAY_EVENTS = """
WITH ep AS (
    SELECT id, company_id, event_types FROM webhook_endpoints WHERE id = $1
), chosen AS (
    SELECT ev.id, ev.created_at
    FROM ep JOIN tenant_events ev ON ev.company_id = ep.company_id
    WHERE ev.created_at >= $2
      AND ($3::timestamptz IS NULL OR ev.created_at < $3)
      AND (cardinality(ep.event_types) = 0 OR ev.type = ANY (ep.event_types))
      AND ($5::text[] IS NULL OR ev.type = ANY ($5))
      AND ($6::text IS NULL OR (ev.created_at, ev.id) > ($2, $6))
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries w
          WHERE w.endpoint_id = ep.id AND w.event_id = ev.id AND w.status IN ('pending', 'retrying'))
    ORDER BY ev.created_at, ev.id
    LIMIT $4
), last_chosen AS (
    SELECT id, created_at FROM chosen ORDER BY created_at DESC, id DESC LIMIT 1
), inserted AS (
    INSERT INTO webhook_deliveries (endpoint_id, event_id, company_id, origin)
    SELECT ep.id, chosen.id, ep.company_id, 'replay'
    FROM chosen CROSS JOIN ep
    ORDER BY chosen.created_at, chosen.id
    RETURNING event_id
)
SELECT (SELECT count(*) FROM inserted) AS replayed,
       (SELECT created_at FROM last_chosen) AS last_created_at, (SELECT id FROM last_chosen) AS last_event_id
"""
COUNT_BY_STATUS = """
SELECT status, count(*) AS n FROM webhook_deliveries WHERE ($1::text IS NULL OR endpoint_id = $1) GROUP BY status
"""

# --- the worker's queries ---------------------------------------------------------------------

# A claim is one transaction of two statements. First lock the endpoints that have due rows
# (skipping endpoints another worker is claiming for right now); then — in a new statement,
# whose snapshot sees every claim committed before the locks were granted — count each
# locked endpoint's rows in flight and take due rows up to its bound. (In one statement the
# count could come from a snapshot older than a concurrent claim and exceed the bound.)
# $1 max endpoints.
LOCK_DUE_ENDPOINTS = """
SELECT e.id
FROM webhook_endpoints e
WHERE e.enabled
  AND EXISTS (
      SELECT 1 FROM webhook_deliveries d
      WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= now()
        AND (d.locked_until IS NULL OR d.locked_until <= now()))
ORDER BY (SELECT min(d.next_attempt_at) FROM webhook_deliveries d
          WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'retrying')), e.id
LIMIT $1
FOR NO KEY UPDATE OF e SKIP LOCKED
"""
# $1 holder, $2 locked endpoint ids, $3 per-endpoint bound, $4 rows wanted, $5 lease seconds.
CLAIM_DUE = """
WITH picked AS (
    SELECT p.id, p.next_attempt_at
    FROM unnest($2::text[]) AS locked(endpoint_id)
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at
        FROM webhook_deliveries d
        WHERE d.endpoint_id = locked.endpoint_id AND d.status IN ('pending', 'retrying')
          AND d.next_attempt_at <= now() AND (d.locked_until IS NULL OR d.locked_until <= now())
        ORDER BY d.next_attempt_at, d.id
        LIMIT greatest(0, $3 - (SELECT count(*) FROM webhook_deliveries f
                                WHERE f.endpoint_id = locked.endpoint_id AND f.locked_until IS NOT NULL
                                  AND f.locked_until > now() AND f.status IN ('pending', 'retrying')))
        FOR NO KEY UPDATE OF d SKIP LOCKED
    ) p
    ORDER BY p.next_attempt_at, p.id
    LIMIT $4
)
UPDATE webhook_deliveries d SET
    locked_by = $1,
    locked_until = now() + make_interval(secs => $5),
    attempts = d.attempts + 1,
    last_attempt_at = now(),
    last_attempt_by = $1
FROM picked, webhook_endpoints e, tenant_events ev
WHERE d.id = picked.id AND e.id = d.endpoint_id AND ev.id = d.event_id
  AND d.status IN ('pending', 'retrying') AND (d.locked_until IS NULL OR d.locked_until <= now())
RETURNING d.id, d.endpoint_id, d.event_id, d.company_id, d.attempts, d.window_started_at,
          e.url, e.include_raw, e.headers_encrypted, e.secret_encrypted,
          CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_encrypted END
              AS previous_secret_encrypted,
          ev.type AS event_type, ev.phone_index, ev.data, ev.raw, ev.created_at AS event_created_at
"""
RECORD_DELIVERED = """
WITH done AS (
    UPDATE webhook_deliveries SET
        status = 'delivered', delivered_at = now(), locked_by = NULL, locked_until = NULL,
        last_status_code = $3, last_error = NULL, last_response_excerpt = $4
    WHERE id = $1 AND locked_by = $2
    RETURNING endpoint_id
)
UPDATE webhook_endpoints e SET consecutive_failures = 0, failing_since = NULL, last_success_at = now()
FROM done
WHERE e.id = done.endpoint_id
  AND (e.consecutive_failures <> 0 OR e.failing_since IS NOT NULL OR e.last_success_at IS NULL
       OR e.last_success_at < now() - interval '10 seconds')
"""
# $5 retry delay, $6 horizon, $7 auto-disable min failures, $8 auto-disable after (seconds).
# The last attempt is scheduled exactly at the horizon; failing then makes the row dead.
# An endpoint failing for long enough is disabled; ``just_disabled`` tells the worker to
# record the warning (disabled_at = now() only in the transaction that disabled it).
RECORD_FAILED = """
WITH failed AS (
    UPDATE webhook_deliveries d SET
        status = CASE WHEN now() >= d.window_started_at + make_interval(secs => $6) THEN 'dead' ELSE 'retrying' END,
        dead_at = CASE WHEN now() >= d.window_started_at + make_interval(secs => $6) THEN now() END,
        next_attempt_at = CASE WHEN now() >= d.window_started_at + make_interval(secs => $6) THEN d.next_attempt_at
                               ELSE least(now() + make_interval(secs => $5),
                                          d.window_started_at + make_interval(secs => $6)) END,
        locked_by = NULL, locked_until = NULL,
        last_status_code = $3, last_error = $4, last_response_excerpt = $9
    WHERE d.id = $1 AND d.locked_by = $2
    RETURNING d.endpoint_id, d.status, d.next_attempt_at
), endpoint AS (
    UPDATE webhook_endpoints e SET
        consecutive_failures = e.consecutive_failures + 1,
        failing_since = coalesce(e.failing_since, now()),
        last_failure_at = now(),
        enabled = e.enabled AND NOT (
            e.consecutive_failures + 1 >= $7
            AND coalesce(e.failing_since, now()) <= now() - make_interval(secs => $8)),
        disabled_at = CASE WHEN e.enabled
                             AND e.consecutive_failures + 1 >= $7
                             AND coalesce(e.failing_since, now()) <= now() - make_interval(secs => $8)
                           THEN now() ELSE e.disabled_at END,
        disabled_reason = CASE WHEN e.enabled
                                 AND e.consecutive_failures + 1 >= $7
                                 AND coalesce(e.failing_since, now()) <= now() - make_interval(secs => $8)
                               THEN format('disabled automatically at %s: every delivery failed since %s '
                                           '(%s attempts in a row; last error: %s)',
                                           to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                           to_char(coalesce(e.failing_since, now()) AT TIME ZONE 'UTC',
                                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                           e.consecutive_failures + 1, left($4, 200))
                               ELSE e.disabled_reason END
    FROM failed
    WHERE e.id = failed.endpoint_id
    RETURNING e.id, e.company_id, e.url, e.consecutive_failures, e.failing_since,
              (NOT e.enabled AND e.disabled_at = now() AND e.disabled_reason IS NOT NULL) AS just_disabled
)
SELECT failed.status, failed.next_attempt_at, endpoint.id AS endpoint_id, endpoint.company_id, endpoint.url,
       endpoint.consecutive_failures, endpoint.failing_since, endpoint.just_disabled
FROM failed LEFT JOIN endpoint ON true
"""
RELEASE_CLAIMS = """
UPDATE webhook_deliveries SET locked_by = NULL, locked_until = NULL
WHERE id = ANY ($1::bigint[]) AND locked_by = $2
"""
# On start: rows this process name held when it died (kill -9) are free again at once.
RELEASE_STALE_CLAIMS = """
UPDATE webhook_deliveries SET locked_by = NULL, locked_until = NULL
WHERE locked_by = $1 AND status IN ('pending', 'retrying')
"""
NEXT_DUE_AT = """
SELECT min(next_attempt_at) FROM webhook_deliveries
WHERE status IN ('pending', 'retrying') AND next_attempt_at > now()
"""
# Gauges: rows waiting per state, and the lag = age of the oldest due, unclaimed row.
BACKLOG_STATS = """
SELECT
    count(*) FILTER (WHERE d.status = 'pending') AS pending,
    count(*) FILTER (WHERE d.status = 'retrying') AS retrying,
    count(*) FILTER (WHERE d.locked_until > now()) AS in_flight,
    coalesce(extract(epoch FROM now() - min(d.next_attempt_at) FILTER (
        WHERE d.next_attempt_at <= now() AND (d.locked_until IS NULL OR d.locked_until <= now())
          AND e.enabled)), 0)::float8 AS lag_seconds
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.status IN ('pending', 'retrying')
"""
COUNT_DEAD_SINCE = """
SELECT count(*) FROM webhook_deliveries WHERE status = 'dead' AND dead_at > now() - interval '1 day'
"""
DELETE_FINISHED = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status IN ('delivered', 'dead') AND updated_at < now() - make_interval(days => $1)
    LIMIT $2)
"""


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    endpoint_id: str
    event_id: str
    company_id: str
    origin: str
    status: str
    attempts: int
    next_attempt_at: datetime
    window_started_at: datetime
    locked_by: str | None
    locked_until: datetime | None
    last_attempt_at: datetime | None
    last_attempt_by: str | None
    last_status_code: int | None
    last_error: str | None
    last_response_excerpt: str | None
    delivered_at: datetime | None
    dead_at: datetime | None
    created_at: datetime
    updated_at: datetime
    event_type: str
    event_created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DeliveryRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class ClaimedDelivery:
    """One attempt to make: the row, its endpoint's target and secrets, and the event."""

    id: int
    endpoint_id: str
    event_id: str
    company_id: str
    attempts: int
    window_started_at: datetime
    url: str
    include_raw: bool
    headers_encrypted: str | None
    secret_encrypted: str
    previous_secret_encrypted: str | None
    event_type: str
    phone_index: int | None
    data: dict[str, Any]
    raw: dict[str, Any] | None
    event_created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ClaimedDelivery:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class FailureOutcome:
    status: str  # retrying | dead | gone (the row was taken over or deleted meanwhile)
    next_attempt_at: datetime | None
    endpoint_id: str | None
    company_id: str | None
    url: str | None
    consecutive_failures: int
    failing_since: datetime | None
    just_disabled: bool


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    last_created_at: datetime | None  # with last_event_id: where the next batch continues
    last_event_id: str | None


async def list_deliveries(conn: asyncpg.Connection, endpoint_id: str, *, status: str | None = None,
                          before: int | None = None, event_id: str | None = None,
                          limit: int = 50) -> list[DeliveryRecord]:
    rows = await conn.fetch(SELECT_DELIVERIES, endpoint_id, status, before, event_id, limit)
    return [DeliveryRecord.from_row(r) for r in rows]


async def get_delivery(conn: asyncpg.Connection, endpoint_id: str, delivery_id: int) -> DeliveryRecord | None:
    row = await conn.fetchrow(SELECT_DELIVERY, delivery_id, endpoint_id)
    return DeliveryRecord.from_row(row) if row else None


async def retry_delivery(conn: asyncpg.Connection, endpoint_id: str, delivery_id: int) -> bool:
    """Re-open one row for an immediate attempt; False if it is in flight (or absent)."""
    done = await conn.fetchval(RETRY_DELIVERY, delivery_id, endpoint_id) is not None
    if done:
        await conn.execute(NOTIFY_WORKERS)
    return done


async def retry_dead(conn: asyncpg.Connection, endpoint_id: str) -> int:
    count = int((await conn.execute(RETRY_DEAD_DELIVERIES, endpoint_id)).split()[-1])
    if count:
        await conn.execute(NOTIFY_WORKERS)
    return count


async def resume_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> int:
    count = int((await conn.execute(RESUME_ENDPOINT_DELIVERIES, endpoint_id)).split()[-1])
    if count:
        await conn.execute(NOTIFY_WORKERS)
    return count


async def replay(conn: asyncpg.Connection, endpoint_id: str, *, since: datetime, until: datetime | None,
                 event_types: list[str] | None, limit: int, after_event_id: str | None = None) -> ReplayResult:
    row = await conn.fetchrow(REPLAY_EVENTS, endpoint_id, since, until, limit, event_types, after_event_id)
    assert row is not None
    return ReplayResult(int(row["replayed"]), row["last_created_at"], row["last_event_id"])


async def count_by_status(conn: asyncpg.Connection, endpoint_id: str | None) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for row in await conn.fetch(COUNT_BY_STATUS, endpoint_id):
        counts[row["status"]] = int(row["n"])
    return counts
