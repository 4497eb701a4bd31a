"""Reading messages back: one with its full state history, or a filtered, paginated list.

Pagination is keyset on the row id (newest first); the cursor is opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

import asyncpg

from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging import store
from bisnesgpt.messaging.states import MessageState

SQL = load_queries("bisnesgpt.messaging")


@dataclass(frozen=True)
class MessageFilter:
    """Which of a company's messages a list shows (None: any), and how many per page."""

    company_id: str
    chat_id: str | None = None
    phone_index: int | None = None
    status: str | None = None
    direction: str | None = None
    message_type: str | None = None
    before_pk: int | None = None
    limit: int = 50


class HistoryEntry(TypedDict):
    """One state change of a message, or a provider status that did not change it (``applied`` false)."""

    fromStatus: MessageState | None
    toStatus: MessageState
    source: str
    detail: JsonObject | None
    at: str | None
    applied: bool
    providerAt: str | None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def history(conn: asyncpg.Connection, record: store.MessageRecord) -> list[HistoryEntry]:
    """The message's state changes and the provider statuses received, oldest first."""
    return [{"fromStatus": r["from_status"], "toStatus": r["to_status"], "source": r["source"],
             "detail": r["detail"], "at": _iso(r["created_at"]), "applied": r["applied"],
             "providerAt": _iso(r["provider_at"])}
            for r in await conn.fetch(SQL.select_status_history, record.id)]


async def page(conn: asyncpg.Connection, where: MessageFilter) -> tuple[list[store.MessageRecord], int | None]:
    """One page, newest first, and the pk to continue before (None on the last page)."""
    rows = await conn.fetch(SQL.select_message_page, where.company_id, where.chat_id, where.phone_index, where.status,
                            where.direction, where.message_type, where.before_pk, where.limit + 1)
    records = [store.MessageRecord.from_row(r) for r in rows[: where.limit]]
    next_pk = records[-1].id if len(rows) > where.limit else None
    return records, next_pk


def encode_cursor(pk: int) -> str:
    """The opaque ``cursor`` that continues a list before row ``pk``."""
    return base64.urlsafe_b64encode(f"m:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row id inside a ``cursor`` (422 problem for anything this API did not hand out)."""
    problem = ValidationFailed("invalid cursor", errors=[{"field": "cursor", "message": "not a cursor from this API",
                                                          "type": "value_error"}])
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        pk = int(text[2:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise problem from exc
    if not text.startswith("m:") or pk < 0:
        raise problem
    return pk
