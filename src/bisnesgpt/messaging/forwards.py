"""Forwarding: the content of a stored message, to be sent again to another chat marked as forwarded.

A forward names a message of the same company and phone, sent or received, by our id (or its
provider id). Its content is read from the stored row at accept and kept in the new message's
payload (``{"message_id", "type", T: {...}}``), so the send does not depend on the original
later. Texts, locations, contact cards and media (by link, or by the gateway's stored copy:
an uploaded ``med_…`` id, or the copy kept of a received file) can be forwarded; reactions,
edits, deletes, polls, status posts, templates and interactive messages cannot (422).
"""

from __future__ import annotations

import dataclasses

import asyncpg

from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging import store
from bisnesgpt.messaging.drafts import MEDIA_TYPES, Draft

SQL = load_queries("bisnesgpt.messaging")

FORWARDABLE_TYPES: frozenset[str] = frozenset({"text", "location", "contacts", *MEDIA_TYPES})
FIELD = "forward.message_id"


def _refused(detail: str, message: str) -> ValidationFailed:
    return ValidationFailed(detail, errors=[{"field": FIELD, "message": message, "type": "value_error"}],
                            extra={"code": "NOT_FORWARDABLE"})


async def resolve_forward(conn: asyncpg.Connection, company_id: str, phone_index: int, draft: Draft) -> Draft:
    """The forward ``draft`` with the original's content filled in (404 unknown, 422 not forwardable)."""
    assert draft.forward_of is not None
    record = await store.MessageRecord.fetch_one(conn, SQL.select_message_by_any_id, company_id, draft.forward_of)
    if record is None:
        raise NotFound(f"message {draft.forward_of!r} not found: forward a message of this company by its "
                       "messageId (GET /api/v1/messages lists them)")
    if record.phone_index != phone_index:
        raise ValidationFailed(
            f"message {draft.forward_of!r} is on phone {record.phone_index}, not {phone_index}: a phone forwards "
            "its own messages (send with its phoneIndex)",
            errors=[{"field": "phoneIndex", "message": f"the message is on phone {record.phone_index}",
                     "type": "value_error"}])
    kind = record.message_type
    if kind not in FORWARDABLE_TYPES:
        raise _refused(f"a '{kind}' message cannot be forwarded: forward texts, media, locations or contacts",
                       f"'{kind}' messages cannot be forwarded")
    content = await _content(conn, record, kind)
    body: JsonObject = {"message_id": record.message_id, "type": kind, kind: content}
    return dataclasses.replace(draft, body=body, content=record.content, mime_type=record.media_mime_type)


async def _content(conn: asyncpg.Connection, record: store.MessageRecord, kind: str) -> JsonValue:
    """The original's ``T`` object as the send pipeline takes it (an inbound message's too)."""
    stored = (record.payload or {}).get(kind)
    if kind == "contacts":
        if not isinstance(stored, list) or not stored:
            raise _refused(f"message {record.message_id} has no contact cards stored", "no contact cards stored")
        return stored
    if kind == "text":
        text = stored.get("body") if isinstance(stored, dict) else None
        body = text if isinstance(text, str) and text else record.content
        if not body:
            raise _refused(f"message {record.message_id} has no text stored", "no text stored")
        # A text that asked for a link preview asks for one again when forwarded.
        preview = isinstance(stored, dict) and stored.get("preview_url") is True
        return {"body": body, "preview_url": True} if preview else {"body": body}
    if not isinstance(stored, dict):
        raise _refused(f"message {record.message_id} has no {kind} stored", f"no {kind} stored")
    if kind == "location":
        return {k: v for k, v in stored.items() if k in ("latitude", "longitude", "name", "address")}
    return await _media(conn, record, kind, stored)


async def _media(conn: asyncpg.Connection, record: store.MessageRecord, kind: str, stored: JsonObject) -> JsonObject:
    """Outbound media as it was sent (link or id); received media by the copy the gateway kept."""
    kept: JsonObject = {k: v for k, v in stored.items() if k in ("caption", "filename") and isinstance(v, str)}
    if record.direction == "outbound":
        source = {k: v for k, v in stored.items() if k in ("link", "id")}
        if source:
            return {**source, **kept}
    media_object = await conn.fetchval(SQL.message_media_object, record.company_id, record.id)
    if not isinstance(media_object, str):
        raise Conflict(
            f"message {record.message_id}'s {kind} is not stored here (its download failed or is still running): "
            "retry once GET /api/v1/messages/{id} shows its media, or send the file again",
            errors=[{"field": FIELD, "message": "the media is not stored", "type": "conflict"}])
    return {"id": media_object, **kept}
