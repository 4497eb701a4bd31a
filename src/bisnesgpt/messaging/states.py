"""Message states and forward-only transitions, each recorded in ``message_status_history``.

The rule itself lives in SQL (``message_status_allows`` in migration 0001) so that every
writer — API, workers, webhook processing, operators with psql — is held to it; ``ALLOWED``
mirrors it for validation in Python (a test checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from bisnesgpt.messaging.events import MESSAGE_STATUS, record_tenant_event

MessageState = Literal["accepted", "queued", "sending", "sent", "delivered", "read", "failed", "cancelled"]

LADDER = ("accepted", "queued", "sending", "sent", "delivered", "read")
TERMINAL = frozenset({"read", "failed", "cancelled"})
# States after which a send must never be attempted again.
PAST_SENDING = frozenset({"sent", "delivered", "read", "failed", "cancelled"})


def allowed(from_status: str, to_status: str) -> bool:
    """Python mirror of SQL ``message_status_allows``."""
    if from_status in TERMINAL:
        return False
    if to_status == "cancelled":
        return from_status in ("accepted", "queued")
    if to_status == "failed":
        return from_status in ("accepted", "queued", "sending", "sent")
    if from_status in LADDER and to_status in LADDER:
        return LADDER.index(to_status) > LADDER.index(from_status)
    return False


# Statuses tenants hear about through `message.status` events.
PUBLISHED_STATUSES = frozenset({"queued", "sent", "delivered", "read", "failed", "cancelled"})

ADVANCE_STATUS = """
WITH prev AS (
    SELECT id, status FROM messages WHERE id = $1 FOR UPDATE
), upd AS (
    UPDATE messages m SET
        status        = $2,
        external_id   = coalesce($4, m.external_id),
        error_code    = CASE WHEN $2 = 'failed' THEN $5 ELSE m.error_code END,
        error_title   = CASE WHEN $2 = 'failed' THEN $6 ELSE m.error_title END,
        error_details = CASE WHEN $2 = 'failed' THEN $7::jsonb ELSE m.error_details END,
        attempts      = m.attempts + CASE WHEN $2 = 'sending' THEN 1 ELSE 0 END,
        queued_at     = CASE WHEN $2 = 'queued' THEN now() ELSE m.queued_at END,
        sent_at       = CASE WHEN $2 = 'sent' THEN now() ELSE m.sent_at END,
        delivered_at  = CASE WHEN $2 = 'delivered' THEN now() ELSE m.delivered_at END,
        read_at       = CASE WHEN $2 = 'read' THEN now() ELSE m.read_at END,
        failed_at     = CASE WHEN $2 = 'failed' THEN now() ELSE m.failed_at END
    FROM prev
    WHERE m.id = prev.id AND message_status_allows(prev.status, $2)
    RETURNING m.id, prev.status AS from_status, m.status AS to_status, m.message_id, m.company_id,
              m.phone_index, m.chat_id, m.external_id, m.direction, m.provider, m.error_code, m.error_title
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    SELECT id, from_status, to_status, $3, $8::jsonb FROM upd
)
SELECT upd.*, (SELECT status FROM prev) AS current_status FROM upd
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT status FROM prev)
WHERE NOT EXISTS (SELECT 1 FROM upd)
"""


@dataclass(frozen=True)
class Transition:
    changed: bool
    from_status: str | None
    to_status: str
    current_status: str | None  # the status before this call (None: no such message)


async def advance_status(
    conn: asyncpg.Connection,
    message_pk: int,
    to_status: MessageState,
    *,
    source: str,
    detail: dict[str, Any] | None = None,
    external_id: str | None = None,
    error_code: str | None = None,
    error_title: str | None = None,
    error_details: Any = None,
    raw: dict[str, Any] | None = None,
) -> Transition:
    """Move a message forward (or do nothing if the rule forbids it), with history and event.

    Call inside a transaction: the history row and the tenant ``message.status`` event commit
    together with the status change, or not at all.
    """
    row = await conn.fetchrow(
        ADVANCE_STATUS, message_pk, to_status, source, external_id, error_code, error_title,
        error_details, detail or {},
    )
    if row is None or row["id"] is None:
        current = row["current_status"] if row is not None else None
        return Transition(False, current, to_status, current)
    if to_status in PUBLISHED_STATUSES:
        data: dict[str, Any] = {
            "message_id": row["message_id"],
            "external_id": row["external_id"],
            "chat_id": row["chat_id"],
            "direction": row["direction"],
            "provider": row["provider"],
            "status": to_status,
            "previous_status": row["from_status"],
        }
        if to_status == "failed":
            data["error"] = {"code": row["error_code"], "title": row["error_title"], "details": error_details}
        await record_tenant_event(
            conn, company_id=row["company_id"], phone_index=row["phone_index"], type=MESSAGE_STATUS,
            data=data, raw=raw,
        )
    return Transition(True, row["from_status"], to_status, row["from_status"])
