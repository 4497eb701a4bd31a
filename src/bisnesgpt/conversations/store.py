"""Reading conversations out of ``messages``: chats, a chat's messages, read state, contacts.

Pages are newest first with an opaque cursor (the last row's time and id). A chat is a
``chat_id`` (``<digits>@c.us``, ``<id>@g.us``); its unread count is its inbound messages
not marked read (``messages.read_at``), which ``mark_read`` sets.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord

SQL = load_queries("bisnesgpt.conversations")
Direction = Literal["inbound", "outbound"]


class NotOnThisEngine(ValidationFailed):
    """What the phone's engine (or its provider) does not offer (a 422 saying so)."""


@dataclass(frozen=True)
class Cursor:
    """Where a page continues: the last row's time and tie-breaker."""

    at: datetime
    key: str

    def encode(self) -> str:
        """The opaque text clients pass back."""
        return base64.urlsafe_b64encode(f"{self.at.isoformat()}|{self.key}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None, field: str = "cursor") -> Cursor | None:
        """The cursor of ``text`` (None for none); a 422 for one this API did not give out."""
        if not text:
            return None
        try:
            at, key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split("|", 1)
            return cls(datetime.fromisoformat(at), key)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValidationFailed(f"{field}: not a cursor this API gave out (use nextCursor as given)",
                                   errors=[{"field": field, "message": "invalid cursor", "type": "value_error"}]
                                   ) from None


@dataclass(frozen=True)
class MessageColumns(RowRecord):
    """The columns of a stored message that every conversation view reads."""

    id: int
    message_id: str
    direction: str
    status: str
    message_type: str
    content: str | None
    created_at: datetime


@dataclass(frozen=True)
class ChatRow(MessageColumns):
    """A chat and its last message (the message's columns)."""

    chat_id: str
    unread_count: int
    contact_name: str | None
    lid: str | None
    number: str | None


@dataclass(frozen=True)
class ChatMessageRow(MessageColumns):
    """One message of a chat."""

    external_id: str | None
    media_object_id: str | None
    media_state: str | None
    media_mime_type: str | None
    media_filename: str | None
    read_at: datetime | None


@dataclass(frozen=True)
class ContactRow(RowRecord):
    """Someone the phone talked with."""

    chat_id: str
    first_seen: datetime
    last_seen: datetime
    profile_name: str | None
    lid: str | None
    number: str | None


def _row_key(cursor: Cursor | None) -> int:
    if cursor is None:
        return 0
    try:
        return int(cursor.key)
    except ValueError:
        raise ValidationFailed("cursor: not a cursor this API gave out (use nextCursor as given)") from None


async def chats(db: Database, company_id: str, phone_index: int, *, cursor: Cursor | None, limit: int,
                unread_only: bool) -> list[ChatRow]:
    """A page of the phone's chats, most recent first."""
    rows = await db.fetch(SQL.list_chats, company_id, phone_index, cursor.at if cursor else None,
                          _row_key(cursor), unread_only, limit)
    return [ChatRow.from_row(r) for r in rows]


async def chat_messages(db: Database, company_id: str, phone_index: int, chat_id: str, *,
                        before: Cursor | None, limit: int) -> list[ChatMessageRow]:
    """A page of one chat's messages, newest first (before the cursor)."""
    rows = await db.fetch(SQL.chat_messages, company_id, phone_index, chat_id, before.at if before else None,
                          _row_key(before), limit)
    return [ChatMessageRow.from_row(r) for r in rows]


async def mark_read(conn: asyncpg.Connection, company_id: str, phone_index: int,
                    chat_id: str) -> tuple[int, str | None]:
    """Mark the chat's inbound messages read: how many were unread, and the newest one's provider id."""
    row = await conn.fetchrow(SQL.mark_chat_read, company_id, phone_index, chat_id)
    return (int(row["marked"]), row["newest_external_id"]) if row is not None else (0, None)


async def unread_inbound(db: Database, company_id: str, phone_index: int, chat_id: str,
                         limit: int = 500) -> list[tuple[str, str | None]]:
    """The chat's unread inbound messages as (provider id, author), oldest first (at most ``limit``)."""
    rows = await db.fetch(SQL.unread_inbound, company_id, phone_index, chat_id, limit)
    return [(str(r["external_id"]), r["sender"]) for r in rows]


async def last_inbound(db: Database, company_id: str, phone_index: int, chat_id: str) -> str | None:
    """The provider id of the chat's newest inbound message."""
    value = await db.fetchval(SQL.last_inbound, company_id, phone_index, chat_id)
    return str(value) if value else None


async def contacts(db: Database, company_id: str, phone_index: int, *, cursor: Cursor | None,
                   limit: int) -> list[ContactRow]:
    """A page of the phone's contacts, most recently seen first."""
    rows = await db.fetch(SQL.list_contacts, company_id, phone_index, cursor.at if cursor else None,
                          cursor.key if cursor else "", limit)
    return [ContactRow.from_row(r) for r in rows]
