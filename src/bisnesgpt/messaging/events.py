"""Canonical tenant events, written in the same transaction as the change that caused them.

``tenant_events`` is the outbox that tenant webhook delivery fans out from. Every engine
produces the same shapes: ``message.inbound``, ``message.status``, ``session.status``,
``phone.status``.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bisnesgpt.core.ids import new_event_id

MESSAGE_INBOUND = "message.inbound"
MESSAGE_STATUS = "message.status"
SESSION_STATUS = "session.status"
PHONE_STATUS = "phone.status"
EVENT_TYPES = (MESSAGE_INBOUND, MESSAGE_STATUS, SESSION_STATUS, PHONE_STATUS)

INSERT_TENANT_EVENT = """
INSERT INTO tenant_events (id, company_id, phone_index, type, data, raw)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
"""


async def record_tenant_event(
    conn: asyncpg.Connection,
    *,
    company_id: str,
    phone_index: int | None,
    type: str,
    data: dict[str, Any],
    raw: dict[str, Any] | None = None,
) -> str:
    """Store one event for the company's webhooks; returns its stable id."""
    event_id = new_event_id()
    await conn.execute(INSERT_TENANT_EVENT, event_id, company_id, phone_index, type, data, raw)
    return event_id
