"""Resolving "the message X" (a reply's quote, a reaction's/edit's/delete's target).

Clients name a message by our ``messageId`` or by the provider's id (wamid / WhatsApp-Web
serialized id). Engines need the provider id, so it is resolved here, within the company:

* found with a provider id → that id (and the message's chat and phone);
* found but not sent yet (no provider id) → 409: there is nothing to point at yet;
* not found and shaped like our id (a UUID) → 404 — in particular another tenant's message;
* not found otherwise → taken as a provider id we have no record of (e.g. a message sent
  from the phone itself); its chat must then come from the request or the id itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging import store
from bisnesgpt.messaging.addressing import Recipient, chat_of_wweb_id
from bisnesgpt.messaging.drafts import Draft, Resolved
from bisnesgpt.messaging.forwards import resolve_forward

SQL = load_queries("bisnesgpt.messaging")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class TargetRef:
    """A resolved reference: the provider id to send, and our record when we have one."""

    external_id: str
    record: store.MessageRecord | None


async def find_message(conn: asyncpg.Connection, company_id: str, ref: str) -> store.MessageRecord | None:
    """A company's message by our id or its provider id."""
    return await store.MessageRecord.fetch_one(conn, SQL.select_message_by_any_id, company_id, ref)


async def resolve_ref(conn: asyncpg.Connection, company_id: str, ref: str, *, field: str) -> TargetRef:
    """The provider id ``ref`` stands for (rules in the module docstring; ``field`` names it in problems)."""
    record = await find_message(conn, company_id, ref)
    if record is None:
        if _UUID.match(ref):
            raise NotFound(f"message {ref!r} not found")
        return TargetRef(ref, None)
    if record.external_id is None:
        raise Conflict(
            f"message {ref!r} has no provider id yet (status {record.status}); retry once it is sent",
            errors=[{"field": field, "message": f"target not sent yet (status {record.status})", "type": "conflict"}],
        )
    return TargetRef(record.external_id, record)


async def resolve_draft(conn: asyncpg.Connection, company_id: str, phone_index: int, draft: Draft) -> Resolved:
    """Settle the draft's recipient and provider ids, and a forward's content (404/409/422 problems on failure)."""
    if draft.forward_of is not None:
        draft = await resolve_forward(conn, company_id, phone_index, draft)
    target: TargetRef | None = None
    if draft.target is not None:
        target = await resolve_ref(conn, company_id, draft.target, field="messageId")
        if target.record is not None and target.record.phone_index != phone_index:
            raise ValidationFailed(
                f"message {draft.target!r} belongs to phone {target.record.phone_index}, not {phone_index}",
                errors=[{"field": "phoneIndex", "message": f"the target message is on phone "
                                                          f"{target.record.phone_index}", "type": "value_error"}],
            )
    reply: TargetRef | None = None
    if draft.reply_to is not None:
        reply = await resolve_ref(conn, company_id, draft.reply_to, field="context.message_id")
    recipient = _recipient(draft, target)
    if target is not None and target.record is not None and target.record.chat_id != recipient.chat_id:
        raise NotFound(f"message {draft.target!r} not found in chat {recipient.chat_id}")
    return Resolved(draft, recipient, target.external_id if target else None, reply.external_id if reply else None)


def _recipient(draft: Draft, target: TargetRef | None) -> Recipient:
    if draft.recipient is not None:
        return draft.recipient
    if target is not None and target.record is not None:
        record = target.record
        is_group = record.chat_id.endswith("@g.us")
        return Recipient(record.chat_id, record.contact, is_group)
    if target is not None:
        derived = chat_of_wweb_id(target.external_id)
        if derived is not None:
            return derived
    raise ValidationFailed(
        "chatId is required for a message this system has no record of",
        errors=[{"field": "chatId", "message": "required: the target message is unknown here", "type": "missing"}],
    )

