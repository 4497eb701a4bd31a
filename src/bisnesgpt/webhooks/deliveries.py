"""``webhook_deliveries`` rows: the delivery log, manual retry, replay, and the worker's claims.

A row is ``pending`` (never attempted), ``retrying`` (failed, next attempt scheduled),
``delivered`` (a 2xx) or ``dead`` (failed past the retry horizon). An attempt in flight is
a row with ``locked_until`` in the future; the in-flight rows of an endpoint are its
concurrency. Claims lock endpoint rows ``FOR NO KEY UPDATE SKIP LOCKED`` while they count and
take that endpoint's due rows, so N workers never exceed the per-endpoint bound and never take
the same row; a worker that dies leaves locks that simply expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import asyncpg

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import Row, RowRecord

SQL = load_queries("bisnesgpt.webhooks")
NOTIFY_CHANNEL = "bisnesgpt_webhook_deliveries"

DeliveryStatus = Literal["pending", "retrying", "delivered", "dead"]
"""Where a row is: never attempted, failed with an attempt scheduled, got a 2xx, or failed past the horizon."""
DeliveryOrigin = Literal["event", "replay"]
"""Why the row exists: an event that matched the endpoint, or a replay asked for later."""
FailureStatus = Literal["retrying", "dead", "gone"]
"""What a failed attempt led to; ``gone``: the row was taken over or deleted meanwhile."""

STATUSES: tuple[DeliveryStatus, ...] = get_args(DeliveryStatus)
OPEN_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "retrying")


@dataclass(frozen=True)
class DeliveryRecord(RowRecord):
    """A row of the delivery log, with its event's type and creation time."""

    id: int
    endpoint_id: str
    event_id: str
    company_id: str
    origin: DeliveryOrigin
    status: DeliveryStatus
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


@dataclass(frozen=True)
class ClaimedDelivery(RowRecord):
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
    data: JsonObject
    raw: JsonObject | None
    event_created_at: datetime


@dataclass(frozen=True)
class FailureOutcome:
    """What recording a failed attempt did to the row and to its endpoint's failure streak."""

    status: FailureStatus
    next_attempt_at: datetime | None
    endpoint_id: str | None
    company_id: str | None
    url: str | None
    consecutive_failures: int
    failing_since: datetime | None
    just_disabled: bool

    @classmethod
    def from_row(cls, row: Row | None) -> FailureOutcome:
        """The outcome ``record_failed`` answered; no row means the claim was no longer ours (``gone``)."""
        if row is None:
            return cls("gone", None, None, None, None, 0, None, False)
        return cls(row["status"], row["next_attempt_at"], row["endpoint_id"], row["company_id"], row["url"],
                   int(row["consecutive_failures"] or 0), row["failing_since"], bool(row["just_disabled"]))


@dataclass(frozen=True)
class ReplayResult:
    """How many events one replay call queued, and where the next call continues."""

    replayed: int
    last_created_at: datetime | None  # with last_event_id: where the next batch continues
    last_event_id: str | None


async def list_deliveries(conn: asyncpg.Connection, endpoint_id: str, *, status: DeliveryStatus | None = None,
                          before: int | None = None, event_id: str | None = None,
                          limit: int = 50) -> list[DeliveryRecord]:
    """An endpoint's delivery log, newest first; ``before`` pages to smaller ids."""
    rows = await conn.fetch(SQL.list_deliveries, endpoint_id, status, before, event_id, limit)
    return [DeliveryRecord.from_row(r) for r in rows]


async def get_delivery(conn: asyncpg.Connection, endpoint_id: str, delivery_id: int) -> DeliveryRecord | None:
    """One row of an endpoint's log (None when it is not this endpoint's)."""
    return await DeliveryRecord.fetch_one(conn, SQL.get_delivery, delivery_id, endpoint_id)


async def _wake_workers(conn: asyncpg.Connection, changed: int) -> None:
    """Wake the workers (at commit) when ``changed`` rows became due now."""
    if changed:
        await conn.execute(SQL.notify_workers, NOTIFY_CHANNEL)


async def retry_delivery(conn: asyncpg.Connection, endpoint_id: str, delivery_id: int) -> bool:
    """Re-open one row for an immediate attempt; False if it is in flight (or absent)."""
    done = await conn.fetchval(SQL.retry_delivery, delivery_id, endpoint_id) is not None
    await _wake_workers(conn, int(done))
    return done


async def retry_dead(conn: asyncpg.Connection, endpoint_id: str) -> int:
    """Re-open every dead row of an endpoint for an immediate attempt; how many."""
    count = int((await conn.execute(SQL.retry_dead_deliveries, endpoint_id)).split()[-1])
    await _wake_workers(conn, count)
    return count


async def resume_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> int:
    """Make a re-enabled endpoint's waiting rows due now, in a fresh window; how many."""
    count = int((await conn.execute(SQL.resume_endpoint_deliveries, endpoint_id)).split()[-1])
    await _wake_workers(conn, count)
    return count


async def replay(conn: asyncpg.Connection, endpoint_id: str, *, since: datetime, until: datetime | None,
                 event_types: list[str] | None, limit: int, after_event_id: str | None = None) -> ReplayResult:
    """Queue the company's events in [since, until) for this endpoint again (one batch of ``limit``)."""
    row = await conn.fetchrow(SQL.replay_events, endpoint_id, since, until, limit, event_types, after_event_id)
    assert row is not None
    return ReplayResult(int(row["replayed"]), row["last_created_at"], row["last_event_id"])


async def count_by_status(conn: asyncpg.Connection, endpoint_id: str | None) -> dict[DeliveryStatus, int]:
    """Rows per status (every status present, 0 when none), of one endpoint or of all."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in await conn.fetch(SQL.count_deliveries_by_status, endpoint_id):
        counts[row["status"]] = int(row["n"])
    return counts
