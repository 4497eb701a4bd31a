"""What became of a message after it was sent: the edits and the delete that went out for it.

An edit or a delete is a message of its own (type ``edit`` / ``delete``) whose
``context_message_id`` is the provider id of the message it acts on. Once it has gone out
(``sent`` or later) it changes what the target shows: the latest edit's text is the
target's current content (the earlier texts are its edit history), and a delete marks it
deleted, with when. Edits and deletes that failed or are still queued change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging.store import MessageRecord

SQL = load_queries("bisnesgpt.messaging")


@dataclass(frozen=True)
class Edit:
    """One edit that went out: the edit message, its text, and when it was sent."""

    message_id: str
    content: str | None
    at: datetime | None


@dataclass(frozen=True)
class Deletion:
    """The delete that went out: the delete message, when, and whether for everyone."""

    message_id: str
    at: datetime | None
    for_everyone: bool


@dataclass(frozen=True)
class Changes:
    """The edits (oldest first) and the delete a message has had."""

    edits: list[Edit] = field(default_factory=list)
    deletion: Deletion | None = None

    def current_content(self, original: str | None) -> str | None:
        """The text the message shows now: the latest edit's, else its own."""
        return self.edits[-1].content if self.edits else original


NO_CHANGES = Changes()


def _for_everyone(record: MessageRecord) -> bool:
    body = record.payload.get("delete")
    flag = body.get("for_everyone", True) if isinstance(body, dict) else True
    return flag is not False


async def changes_of(conn: asyncpg.Connection, records: Iterable[MessageRecord]) -> dict[int, Changes]:
    """The changes of each of ``records`` that has any, by row id (one query for a page)."""
    targets: dict[tuple[str, int, str | None], int] = {
        (r.company_id, r.phone_index, r.external_id): r.id for r in records if r.external_id}
    if not targets:
        return {}
    companies = sorted({company for company, _, _ in targets})
    rows = await conn.fetch(SQL.select_sent_changes, companies, sorted({e for _, _, e in targets if e}))
    found: dict[int, Changes] = {}
    for row in rows:
        change = MessageRecord.from_row(row)
        pk = targets.get((change.company_id, change.phone_index, change.context_message_id))
        if pk is None:
            continue
        current = found.get(pk, NO_CHANGES)
        if change.message_type == "edit":
            found[pk] = Changes([*current.edits, Edit(change.message_id, change.content, change.sent_at)],
                                current.deletion)
        elif current.deletion is None:  # the first delete that went out is when it was deleted
            found[pk] = Changes(current.edits,
                                Deletion(change.message_id, change.sent_at, _for_everyone(change)))
    return found
