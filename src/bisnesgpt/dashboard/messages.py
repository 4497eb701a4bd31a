"""Finding messages (by our id, the provider's id or the chat) and everything about one.

A search term is tried as a message id or provider id first, as a chat (digits, or
``…@c.us`` / ``…@g.us``) next, and otherwise as part of an id, a chat or a text. The list
can be narrowed by status, direction, engine, phone and time, and is paged by row id. A
message's page shows its state history (the timeline), the provider error, and the tenant
webhook deliveries of its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from typing_extensions import TypedDict

from bisnesgpt.api.schemas.common import iso
from bisnesgpt.api.schemas.messages import MessageDetail, MessageHeader
from bisnesgpt.core.errors import NotFound, ValidationFailed
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging import store, views
from bisnesgpt.messaging.addressing import normalize_recipient
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.dashboard")

LIMIT = 50
SUMMARY_CONTENT_CHARS = 120
MatchedBy = Literal["recent", "id", "chat", "text"]


class MessageSummary(MessageHeader):
    """A message in a search result (the content cut short)."""

    externalId: str | None
    errorCode: str | None
    content: str
    createdAt: str | None
    updatedAt: str | None


class SearchResult(TypedDict):
    """The messages found, how the term matched them, and the cursor of the next page (None: no more)."""

    matchedBy: MatchedBy
    data: list[MessageSummary]
    next: int | None


@dataclass(frozen=True)
class MessageFilter:
    """What the messages list is narrowed to (None: any)."""

    status: str | None = None
    direction: Literal["inbound", "outbound"] | None = None
    engine: str | None = None
    phone_index: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None


def like_pattern(term: str) -> str:
    """An ILIKE pattern matching ``term`` anywhere (its own % and _ taken literally)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class MessageDelivery(TypedDict):
    """One tenant webhook delivery of one of the message's events."""

    id: int
    endpointId: str
    url: str
    eventId: str
    eventType: str
    eventStatus: str | None
    origin: str
    status: str
    attempts: int
    lastStatusCode: int | None
    lastError: str | None
    lastAttemptAt: str | None
    nextAttemptAt: str | None
    deliveredAt: str | None
    deadAt: str | None
    createdAt: str | None


class DashboardMessage(MessageDetail):
    """A message as the public API shows it, with the webhook deliveries of its events."""

    deliveries: list[MessageDelivery]


def chat_of(term: str) -> str | None:
    """``60123456789@c.us`` for a term that names a chat (a number or a chat id), else None."""
    try:
        return normalize_recipient(term, field="q").chat_id
    except ValidationFailed:
        return None


async def search(ctx: ProcessContext, company_id: str | None, term: str | None,
                 filters: MessageFilter | None = None) -> SearchResult:
    """The latest messages (no term), or those a term names: our id or the provider's exactly first,
    then a chat, then any message whose id, provider id, chat or text contains the term; filtered
    and paged (``next``: pass it as ``before`` for the following page)."""
    f = filters or MessageFilter()
    term = (term or "").strip() or None
    how: MatchedBy = "recent"
    rows: list[asyncpg.Record] = []
    async with ctx.db.connection() as conn:
        if term is not None and f.before is None:
            rows = await conn.fetch(SQL.search_messages_by_id, company_id, term, LIMIT)
            how = "id"
            chat = chat_of(term)
            if not rows and chat is not None:
                rows = await conn.fetch(SQL.search_messages_by_chat, company_id, chat, LIMIT)
                how = "chat"
        if not rows:
            rows = await conn.fetch(SQL.recent_messages, company_id, f.status, f.direction, f.engine, f.phone_index,
                                    f.since, f.until, f.before, like_pattern(term) if term else None, LIMIT)
            how = "text" if term else "recent"
    paged = how in ("recent", "text") and len(rows) == LIMIT
    return {"matchedBy": how, "data": [summary(store.MessageRecord.from_row(r)) for r in rows],
            "next": int(rows[-1]["id"]) if paged else None}


def summary(record: store.MessageRecord) -> MessageSummary:
    """A message as a search result lists it."""
    return MessageSummary.of(
        record, externalId=record.external_id, errorCode=record.error_code,
        content=(record.content or "")[:SUMMARY_CONTENT_CHARS], createdAt=iso(record.created_at),
        updatedAt=iso(record.updated_at))


async def detail(ctx: ProcessContext, company_id: str, message_id: str) -> DashboardMessage:
    """One message: its public view, state history and webhook deliveries (404 if the company has no such id)."""
    async with ctx.db.connection() as conn:
        record = await store.load_message(conn, message_id, company_id)
        if record is None:
            raise NotFound(f"message {message_id!r} not found")
        history = await views.history(conn, record)
        rows = await conn.fetch(SQL.message_deliveries, company_id, message_id, record.created_at)
    deliveries: list[MessageDelivery] = [{
        "id": d["id"], "endpointId": d["endpoint_id"], "url": d["url"], "eventId": d["event_id"],
        "eventType": d["event_type"], "eventStatus": d["event_status"], "origin": d["origin"],
        "status": d["status"], "attempts": d["attempts"], "lastStatusCode": d["last_status_code"],
        "lastError": d["last_error"], "lastAttemptAt": iso(d["last_attempt_at"]),
        "nextAttemptAt": iso(d["next_attempt_at"]), "deliveredAt": iso(d["delivered_at"]),
        "deadAt": iso(d["dead_at"]), "createdAt": iso(d["created_at"]),
    } for d in rows]
    return DashboardMessage.of(record, history=history, deliveries=deliveries)
