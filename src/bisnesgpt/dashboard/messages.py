"""Finding messages (by our id, the provider's id or the chat) and everything about one.

A search term is tried as a message id or provider id first and as a chat (digits, or
``…@c.us`` / ``…@g.us``) otherwise. A message's page shows its state history (the
timeline), the provider error, and the tenant webhook deliveries of its events.
"""

from __future__ import annotations

from typing import Any

from bisnesgpt.core.errors import NotFound, ValidationFailed
from bisnesgpt.messaging import store, views
from bisnesgpt.messaging.addressing import normalize_recipient
from bisnesgpt.processes.context import ProcessContext

LIMIT = 50

SEARCH_BY_ID = f"""
SELECT {store.MESSAGE_COLUMNS} FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND (message_id = $2 OR external_id = $2)
ORDER BY id DESC LIMIT {LIMIT}
"""
SEARCH_BY_CHAT = f"""
SELECT {store.MESSAGE_COLUMNS} FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND chat_id = $2
ORDER BY id DESC LIMIT {LIMIT}
"""
RECENT = f"""
SELECT {store.MESSAGE_COLUMNS} FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC LIMIT {LIMIT}
"""
ONE = f"SELECT {store.MESSAGE_COLUMNS} FROM messages WHERE company_id = $1 AND message_id = $2"
DELIVERIES = """
SELECT d.id, d.endpoint_id, e.url, d.event_id, te.type AS event_type, te.data->>'status' AS event_status,
       d.origin, d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at,
       d.delivered_at, d.dead_at, d.created_at
FROM tenant_events te
JOIN webhook_deliveries d ON d.event_id = te.id
JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE te.company_id = $1 AND te.created_at >= $3::timestamptz - interval '1 minute' AND te.data->>'message_id' = $2
ORDER BY d.id
LIMIT 200
"""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def chat_of(term: str) -> str | None:
    """``60123456789@c.us`` for a term that names a chat (a number or a chat id), else None."""
    try:
        return normalize_recipient(term, field="q").chat_id
    except ValidationFailed:
        return None


async def search(ctx: ProcessContext, company_id: str | None, term: str | None, status: str | None) \
        -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        if not term:
            rows = await conn.fetch(RECENT, company_id, status)
            how = "recent"
        else:
            rows = await conn.fetch(SEARCH_BY_ID, company_id, term.strip())
            how = "id"
            chat = chat_of(term)
            if not rows and chat is not None:
                rows = await conn.fetch(SEARCH_BY_CHAT, company_id, chat)
                how = "chat"
    return {"matchedBy": how, "data": [summary(store.MessageRecord.from_row(r)) for r in rows]}


def summary(record: store.MessageRecord) -> dict[str, Any]:
    return {"messageId": record.message_id, "companyId": record.company_id, "phoneIndex": record.phone_index,
            "direction": record.direction, "chatId": record.chat_id, "type": record.message_type,
            "status": record.status, "provider": record.provider, "externalId": record.external_id,
            "errorCode": record.error_code, "content": (record.content or "")[:120],
            "createdAt": _iso(record.created_at), "updatedAt": _iso(record.updated_at)}


async def detail(ctx: ProcessContext, company_id: str, message_id: str) -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        row = await conn.fetchrow(ONE, company_id, message_id)
        if row is None:
            raise NotFound(f"message {message_id!r} not found")
        record = store.MessageRecord.from_row(row)
        history = await views.history(conn, record)
        deliveries = await conn.fetch(DELIVERIES, company_id, message_id, record.created_at)
    return {
        **views.message_json(record),
        "history": history,
        "deliveries": [{
            "id": d["id"], "endpointId": d["endpoint_id"], "url": d["url"], "eventId": d["event_id"],
            "eventType": d["event_type"], "eventStatus": d["event_status"], "origin": d["origin"],
            "status": d["status"], "attempts": d["attempts"], "lastStatusCode": d["last_status_code"],
            "lastError": d["last_error"], "lastAttemptAt": _iso(d["last_attempt_at"]),
            "nextAttemptAt": _iso(d["next_attempt_at"]), "deliveredAt": _iso(d["delivered_at"]),
            "deadAt": _iso(d["dead_at"]), "createdAt": _iso(d["created_at"]),
        } for d in deliveries],
    }
