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

import asyncpg

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging.events import MESSAGE_STATUS, record_tenant_event

SQL = load_queries("bisnesgpt.dashboard")

OPERATOR_SOURCE = "operator"


@dataclass(frozen=True)
class Requeue:
    """What a re-queue did: whether the message went back to ``queued``, and the status it had."""

    requeued: bool
    previous_status: str | None  # None: no such message


async def requeue_failed(conn: asyncpg.Connection, message_pk: int, *, by: str, queue: str) -> Requeue:
    """``failed → queued`` for an outbound message (call inside a transaction); no-op otherwise."""
    row = await conn.fetchrow(SQL.requeue_failed, message_pk, OPERATOR_SOURCE, by, queue)
    if row is None or row["id"] is None:
        return Requeue(False, row["previous_status"] if row is not None else None)
    data: JsonObject = {
        "message_id": row["message_id"], "external_id": row["external_id"], "chat_id": row["chat_id"],
        "direction": "outbound", "provider": row["provider"], "status": "queued", "previous_status": "failed",
        "requeued_by": OPERATOR_SOURCE,
    }
    await record_tenant_event(conn, company_id=row["company_id"], phone_index=row["phone_index"],
                              type=MESSAGE_STATUS, data=data)
    return Requeue(True, "failed")
