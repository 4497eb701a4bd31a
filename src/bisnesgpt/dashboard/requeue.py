"""The one way back from ``failed``: an operator re-queues an outbound message.

Message states only move forward (``message_status_allows``): a send job fails in BullMQ
only after its message was marked ``failed``, so retrying the job alone would make the
worker skip it. Retrying it from the dashboard therefore moves the message
``failed → queued`` first — explicitly, for outbound messages in ``failed`` only, with a
history row (source ``operator``, who did it, the error it had) and a tenant
``message.status`` event, in one transaction. The error columns are cleared (the message
is no longer failed); the previous error stays in that history row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from bisnesgpt.messaging.events import MESSAGE_STATUS, record_tenant_event

OPERATOR_SOURCE = "operator"

REQUEUE_FAILED = """
WITH prev AS (
    SELECT id, status, direction, error_code, error_title, error_details, failed_at
    FROM messages WHERE id = $1 FOR UPDATE
), upd AS (
    UPDATE messages m SET status = 'queued', queued_at = now(), error_code = NULL, error_title = NULL,
                          error_details = NULL, failed_at = NULL
    FROM prev
    WHERE m.id = prev.id AND prev.status = 'failed' AND prev.direction = 'outbound'
    RETURNING m.id, m.message_id, m.company_id, m.phone_index, m.chat_id, m.external_id, m.provider
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    SELECT upd.id, 'failed', 'queued', $2,
           jsonb_build_object('action', 'retry', 'by', $3::text, 'queue', $4::text,
                              'previousError', jsonb_build_object('code', prev.error_code, 'title', prev.error_title,
                                                                  'details', prev.error_details,
                                                                  'failedAt', prev.failed_at))
    FROM upd JOIN prev ON prev.id = upd.id
)
SELECT upd.*, (SELECT status FROM prev) AS previous_status, (SELECT direction FROM prev) AS direction
FROM upd
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT status FROM prev), (SELECT direction FROM prev)
WHERE NOT EXISTS (SELECT 1 FROM upd)
"""


@dataclass(frozen=True)
class Requeue:
    requeued: bool
    previous_status: str | None  # None: no such message


async def requeue_failed(conn: asyncpg.Connection, message_pk: int, *, by: str, queue: str) -> Requeue:
    """``failed → queued`` for an outbound message (call inside a transaction); no-op otherwise."""
    row = await conn.fetchrow(REQUEUE_FAILED, message_pk, OPERATOR_SOURCE, by, queue)
    if row is None or row["id"] is None:
        return Requeue(False, row["previous_status"] if row is not None else None)
    data: dict[str, Any] = {
        "message_id": row["message_id"], "external_id": row["external_id"], "chat_id": row["chat_id"],
        "direction": "outbound", "provider": row["provider"], "status": "queued", "previous_status": "failed",
        "requeued_by": OPERATOR_SOURCE,
    }
    await record_tenant_event(conn, company_id=row["company_id"], phone_index=row["phone_index"],
                              type=MESSAGE_STATUS, data=data)
    return Requeue(True, "failed")
