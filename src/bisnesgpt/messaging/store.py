"""Reading and writing ``messages`` rows: the queries the pipeline and the engines share."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from bisnesgpt.messaging.events import MESSAGE_STATUS, record_tenant_event
from bisnesgpt.messaging.states import MessageState

MESSAGE_COLUMNS = """
    id, message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
    message_type, content, media_url, media_id, media_mime_type, media_filename, payload, raw,
    status, external_id, context_message_id, error_code, error_title, error_details, attempts,
    idempotency_key, queue_name, process_name, source, deadline_at, created_at, updated_at,
    queued_at, sent_at, delivered_at, read_at, failed_at
"""

SELECT_BY_MESSAGE_ID = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = $1 AND company_id = $2"
SELECT_BY_MESSAGE_ID_ANY_COMPANY = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = $1"
SELECT_BY_PK = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
SELECT_OUTBOUND_BY_EXTERNAL_ID = f"""
SELECT {MESSAGE_COLUMNS} FROM messages
WHERE external_id = $1 AND direction = 'outbound' ORDER BY id DESC LIMIT 1
"""

INSERT_OUTBOUND = f"""
INSERT INTO messages (
    message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
    message_type, content, media_url, media_id, media_mime_type, media_filename, payload, raw,
    status, context_message_id, idempotency_key, queue_name, process_name, source, deadline_at,
    queued_at)
VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb,
        'queued', $15, $16, $17, $18, $19, $20, now())
ON CONFLICT (message_id, company_id) DO NOTHING
RETURNING {MESSAGE_COLUMNS}
"""

INSERT_QUEUED_HISTORY = """
INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
VALUES ($1, NULL, 'queued', $2, $3::jsonb)
"""

# Claim a message for a send attempt: queued -> sending, or another attempt while sending.
CLAIM_FOR_SEND = """
WITH prev AS (
    SELECT id, status FROM messages WHERE id = $1 FOR UPDATE
), upd AS (
    UPDATE messages m SET status = 'sending', attempts = m.attempts + 1, process_name = $3
    FROM prev WHERE m.id = prev.id AND prev.status IN ('accepted', 'queued', 'sending')
    RETURNING m.id, prev.status AS from_status, m.attempts
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    SELECT id, from_status, 'sending', $2, jsonb_build_object('attempt', attempts)
    FROM upd WHERE from_status <> 'sending'
)
SELECT (SELECT status FROM prev) AS previous_status, (SELECT attempts FROM upd) AS attempts
"""

TOUCH_OUTBOUND_SESSION = """
INSERT INTO conversation_sessions (company_id, phone_index, contact, last_outbound_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (company_id, phone_index, contact) DO UPDATE SET last_outbound_at = now()
"""

TOUCH_INBOUND_SESSION = """
INSERT INTO conversation_sessions (company_id, phone_index, contact, last_inbound_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (company_id, phone_index, contact) DO UPDATE
SET last_inbound_at = GREATEST(conversation_sessions.last_inbound_at, EXCLUDED.last_inbound_at)
"""


@dataclass(frozen=True)
class MessageRecord:
    id: int
    message_id: str
    company_id: str
    phone_index: int
    direction: str
    provider: str
    connection_type: str | None
    chat_id: str
    message_type: str
    content: str | None
    media_url: str | None
    media_id: str | None
    media_mime_type: str | None
    media_filename: str | None
    payload: dict[str, Any]
    raw: dict[str, Any] | None
    status: MessageState
    external_id: str | None
    context_message_id: str | None
    error_code: str | None
    error_title: str | None
    error_details: Any
    attempts: int
    idempotency_key: str | None
    queue_name: str | None
    process_name: str | None
    source: str
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> MessageRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def contact(self) -> str:
        """The recipient's digits (``60123456789`` from ``60123456789@c.us``)."""
        return self.chat_id.split("@", 1)[0]


@dataclass(frozen=True)
class NewOutboundMessage:
    message_id: str
    company_id: str
    phone_index: int
    provider: str
    connection_type: str | None
    chat_id: str
    message_type: str
    payload: dict[str, Any]
    queue_name: str
    process_name: str
    content: str | None = None
    media_url: str | None = None
    media_id: str | None = None
    media_mime_type: str | None = None
    media_filename: str | None = None
    raw: dict[str, Any] | None = None
    context_message_id: str | None = None
    idempotency_key: str | None = None
    source: str = "api"
    deadline_at: datetime | None = None


async def insert_outbound(conn: asyncpg.Connection, new: NewOutboundMessage) -> MessageRecord | None:
    """Insert a ``queued`` outbound message with its first history row (None if it exists)."""
    row = await conn.fetchrow(
        INSERT_OUTBOUND, new.message_id, new.company_id, new.phone_index, new.provider,
        new.connection_type, new.chat_id, new.message_type, new.content, new.media_url, new.media_id,
        new.media_mime_type, new.media_filename, new.payload, new.raw, new.context_message_id,
        new.idempotency_key, new.queue_name, new.process_name, new.source, new.deadline_at,
    )
    if row is None:
        return None
    await conn.execute(INSERT_QUEUED_HISTORY, row["id"], new.source, {"queue": new.queue_name})
    message = MessageRecord.from_row(row)
    await record_tenant_event(
        conn, company_id=message.company_id, phone_index=message.phone_index, type=MESSAGE_STATUS,
        data={"message_id": message.message_id, "external_id": None, "chat_id": message.chat_id,
              "direction": "outbound", "provider": message.provider, "status": "queued", "previous_status": None},
    )
    return message


async def load_message(conn: asyncpg.Connection, message_id: str, company_id: str | None) -> MessageRecord | None:
    if company_id is None:
        row = await conn.fetchrow(SELECT_BY_MESSAGE_ID_ANY_COMPANY, message_id)
    else:
        row = await conn.fetchrow(SELECT_BY_MESSAGE_ID, message_id, company_id)
    return MessageRecord.from_row(row) if row else None


async def load_message_pk(conn: asyncpg.Connection, message_pk: int) -> MessageRecord | None:
    row = await conn.fetchrow(SELECT_BY_PK, message_pk)
    return MessageRecord.from_row(row) if row else None


async def find_outbound_by_external_id(conn: asyncpg.Connection, external_id: str) -> MessageRecord | None:
    row = await conn.fetchrow(SELECT_OUTBOUND_BY_EXTERNAL_ID, external_id)
    return MessageRecord.from_row(row) if row else None


async def claim_for_send(conn: asyncpg.Connection, message_pk: int, *, source: str, process_name: str) -> int | None:
    """Mark a message ``sending`` for one more attempt; None if it may not be sent."""
    row = await conn.fetchrow(CLAIM_FOR_SEND, message_pk, source, process_name)
    if row is None or row["attempts"] is None:
        return None
    return int(row["attempts"])


async def touch_outbound_session(conn: asyncpg.Connection, company_id: str, phone_index: int, contact: str) -> None:
    await conn.execute(TOUCH_OUTBOUND_SESSION, company_id, phone_index, contact)


async def touch_inbound_session(
    conn: asyncpg.Connection, company_id: str, phone_index: int, contact: str, at: datetime
) -> None:
    await conn.execute(TOUCH_INBOUND_SESSION, company_id, phone_index, contact, at)
