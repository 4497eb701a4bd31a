"""The common path of an accept in one statement: one PostgreSQL round trip per message.

A message that names its recipient and no other message (no reaction/edit/delete target, no
quoted reply) is stored by ``accept_outbound()`` (migration 0024): the window check, the
Idempotency-Key claim, the chat's number, the message row, its history row, its tenant event
and the key's answer, committed together as one statement outside any transaction. Whatever
it cannot settle (a key that is taken, a closed window with a key to replay first, a message
already stored under the key) it leaves untouched and answers ``None``: the caller then runs
the full path (``sending.SendService._store``), which answers those cases as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import asyncpg

from bisnesgpt.core.ids import new_event_id, new_message_id
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.meta.window import ALWAYS_ALLOWED_TYPES, template_required
from bisnesgpt.messaging.drafts import Draft, Resolved
from bisnesgpt.messaging.idempotency import STALE_AFTER, IdempotencyKey
from bisnesgpt.messaging.router import Route
from bisnesgpt.messaging.store import MessageRecord

SQL = load_queries("bisnesgpt.messaging")

AcceptOutcome = Literal["stored", "window_closed", "key_taken"]


@dataclass(frozen=True)
class FastAccept:
    """What the one statement needs beyond the draft: the request's routing and key."""

    company_id: str
    phone_index: int
    route: Route
    ordered: bool
    source: str
    key: IdempotencyKey | None
    key_ttl: timedelta
    # False with ?wait=: the key stays in_flight until the answer is known.
    complete_key: bool


@dataclass(frozen=True)
class Stored:
    """A message the statement committed, and whether its chat holds it behind an earlier one."""

    record: MessageRecord
    held: bool


def eligible(draft: Draft) -> bool:
    """Whether the draft needs no other message looked up (its recipient is known)."""
    return (draft.recipient is not None and draft.target is None and draft.reply_to is None
            and draft.forward_of is None)


async def accept(conn: asyncpg.Connection, draft: Draft, job: FastAccept) -> Stored | None:
    """Store the message in one statement; None when the full path must answer (nothing stored).

    Raises ``TemplateRequired`` for a closed window when there is no key (with a key the full
    path runs: a replay of the key answers first, as it always did), and asyncpg's unique
    violation when a message already exists under the key (the caller's full path handles it).
    """
    assert draft.recipient is not None
    resolved = Resolved(draft, draft.recipient, None, None)
    recipient = draft.recipient
    route = job.route
    message_id = new_message_id()
    window_contact = (recipient.to if route.process_name == "meta" and draft.type not in ALWAYS_ALLOWED_TYPES
                      else None)
    key = job.key
    answer = ({"success": True, "messageId": message_id, "status": "queued", "process": route.process_name,
               "queueName": route.queue_name} if key is not None and job.complete_key else None)
    event = {"message_id": message_id, "external_id": None, "chat_id": recipient.chat_id, "direction": "outbound",
             "provider": route.process_name, "status": "queued", "previous_status": None}
    media = draft.media
    row = await conn.fetchrow(
        SQL.accept_outbound, message_id, job.company_id, job.phone_index, route.process_name,
        route.connection_type, recipient.chat_id, draft.type, draft.content, media.link, media.id,
        draft.mime_type, media.filename, resolved.payload(), {"request": draft.request} if draft.request else None,
        None, key.key if key else None, route.queue_name, route.process_name, job.source, None,
        job.ordered, window_contact,
        key.request_hash if key else None, key.method if key else None, key.path if key else None,
        job.key_ttl, STALE_AFTER, answer, new_event_id(), event,
    )
    assert row is not None
    outcome: AcceptOutcome = row["outcome"]
    if outcome == "key_taken":
        return None
    if outcome == "window_closed":
        if key is not None:
            return None
        assert window_contact is not None
        raise template_required(window_contact, row["last_inbound"])
    record = MessageRecord.from_row(row)
    return Stored(record, held=record.chat_seq is not None and not row["is_head"])
