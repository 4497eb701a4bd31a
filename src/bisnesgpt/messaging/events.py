"""Canonical tenant events, written in the same transaction as the change that caused them.

``tenant_events`` is the outbox that tenant webhook delivery fans out from:
``record_tenant_event`` also writes one ``webhook_deliveries`` row per enabled endpoint of
the company whose event filter matches, in the same statement, so an event and its
deliveries commit (or roll back) together with the change. Every engine produces the
same shapes (the ``*_data`` helpers below build them):

``message.inbound``  ``{message_id, external_id, chat_id, from, type, text, media, context,
                     timestamp, provider, push_name}``
``message.status``   ``{message_id, external_id, chat_id, direction, provider, status,
                     previous_status, error?}`` (written by ``states.advance_status``)
``session.status``   ``{status, connection_type, qr?, pairing_code?, reason?, phone_number?}``
``phone.status``     ``{status, connection_type, reason?, ...}``

The provider's original payload goes in ``raw``; webhooks add it as ``data.raw`` only for
endpoints that ask for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, NotRequired, TypedDict, cast

import asyncpg

from bisnesgpt.core.ids import new_event_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.messaging")

MESSAGE_INBOUND: Final = "message.inbound"
MESSAGE_STATUS: Final = "message.status"
SESSION_STATUS: Final = "session.status"
PHONE_STATUS: Final = "phone.status"
EventType = Literal["message.inbound", "message.status", "session.status", "phone.status"]
EVENT_TYPES: tuple[EventType, ...] = (MESSAGE_INBOUND, MESSAGE_STATUS, SESSION_STATUS, PHONE_STATUS)


class MessageError(TypedDict):
    """Why a message failed: the provider's (or our) code and title, and its details."""

    code: str | None
    title: str | None
    details: JsonValue


class MessageStatusData(TypedDict):
    """``message.status`` data (the ``error`` only when the message failed)."""

    message_id: str
    external_id: str | None
    chat_id: str
    direction: str
    provider: str
    status: str
    previous_status: str | None
    error: NotRequired[MessageError]


# ``from`` is a keyword, hence the functional form.
InboundMessageData = TypedDict("InboundMessageData", {
    "message_id": str, "external_id": NotRequired[str], "chat_id": str, "from": str, "type": str,
    "text": NotRequired[str], "media": NotRequired[JsonObject], "context": NotRequired[JsonObject],
    "timestamp": str, "provider": str, "push_name": NotRequired[str],
})


class SessionStatusData(TypedDict):
    """``session.status`` data."""

    status: str
    connection_type: str
    qr: NotRequired[str]
    pairing_code: NotRequired[str]
    reason: NotRequired[str]
    phone_number: NotRequired[str]


async def record_tenant_event(
    conn: asyncpg.Connection,
    *,
    company_id: str,
    phone_index: int | None,
    type: EventType,
    data: Mapping[str, object],
    raw: JsonObject | None = None,
) -> str:
    """Store one event and its webhook deliveries (call inside the change's transaction).

    ``data`` is the event's JSON object (one of the shapes above); returns the event's
    stable id (``X-Bisnesgpt-Event-Id`` on every delivery of it).
    """
    event_id = new_event_id()
    await conn.execute(SQL.insert_tenant_event, event_id, company_id, phone_index, type, data, raw)
    return event_id


def inbound_message_data(
    *,
    message_id: str,
    chat_id: str,
    sender: str,
    message_type: str,
    provider: str,
    timestamp: str,
    external_id: str | None = None,
    text: str | None = None,
    media: JsonObject | None = None,
    context: JsonObject | None = None,
    push_name: str | None = None,
) -> InboundMessageData:
    """``message.inbound`` data; ``timestamp`` is ISO 8601 UTC, ``sender`` the sender's digits."""
    return cast("InboundMessageData", _without_none({
        "message_id": message_id, "external_id": external_id, "chat_id": chat_id, "from": sender,
        "type": message_type, "text": text, "media": media, "context": context, "timestamp": timestamp,
        "provider": provider, "push_name": push_name,
    }))


def session_status_data(
    *,
    status: str,
    connection_type: str = "wwebjs",
    qr: str | None = None,
    pairing_code: str | None = None,
    reason: str | None = None,
    phone_number: str | None = None,
) -> SessionStatusData:
    """``session.status`` data: qr (a PNG data URL), pairing_code, ready, disconnected (reason), error."""
    return cast("SessionStatusData", _without_none({
        "status": status, "connection_type": connection_type, "qr": qr, "pairing_code": pairing_code,
        "reason": reason, "phone_number": phone_number,
    }))


def phone_status_data(*, status: str, connection_type: str | None, reason: str | None = None,
                      **details: JsonValue) -> JsonObject:
    """``phone.status`` data (e.g. ``status="partner_removed"`` for a Meta phone); ``None`` values left out.

    Open-ended: each engine adds the details of its phone's state beside the three fixed keys.
    """
    return _without_none({"status": status, "connection_type": connection_type, "reason": reason, **details})


def _without_none(values: JsonObject) -> JsonObject:
    """The keys whose value is not None (the ``*_data`` shapes leave absent what is unknown)."""
    return {key: value for key, value in values.items() if value is not None}
