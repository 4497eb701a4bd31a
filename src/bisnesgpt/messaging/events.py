"""Canonical tenant events, written in the same transaction as the change that caused them.

``tenant_events`` is the outbox that tenant webhook delivery fans out from: the statement
that inserts events also writes one ``webhook_deliveries`` row per enabled endpoint of the
company whose event filter matches (the ``tenant_events`` trigger of migration 0025, the one
place that rule lives, whoever inserts the event), so an event and its deliveries commit (or
roll back) together with the change. Every engine produces the same shapes:

``message.inbound``  ``{message_id, external_id, chat_id, from, type, text, media, context,
                     timestamp, provider, push_name}``
``message.status``   ``{message_id, external_id, chat_id, direction, provider, status,
                     previous_status, error?}`` (written by ``states.advance_status``)
``message.media``    ``{message_id, external_id, chat_id, provider, media}`` when an inbound
                     message's download ends (``media.state`` stored or failed, with ``error``)
``session.status``   ``{status, connection_type, qr?, pairing_code?, reason?, phone_number?}``
``phone.status``     ``{status, connection_type, reason?, ...}``
``message.poll_vote`` ``{message_id, external_id, chat_id, voter, voter_lid, selected,
                     tallies: [{option, votes}], timestamp, provider}`` (a vote on our poll)
``group.participants`` ``{group_id, change: joined|left|promoted|demoted, participants, by,
                     timestamp, provider, notification_id}`` (WhatsApp-Web phones)
``group.updated``    ``{group_id, changes: {subject?, description?, announce?, locked?}, by,
                     timestamp, provider, notification_id}``

The provider's original payload goes in ``raw``; webhooks add it as ``data.raw`` only for
endpoints that ask for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, NotRequired, TypedDict

import asyncpg

from bisnesgpt.core.ids import new_event_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.messaging")

MESSAGE_INBOUND: Final = "message.inbound"
MESSAGE_STATUS: Final = "message.status"
MESSAGE_MEDIA: Final = "message.media"
SESSION_STATUS: Final = "session.status"
PHONE_STATUS: Final = "phone.status"
MESSAGE_POLL_VOTE: Final = "message.poll_vote"
GROUP_PARTICIPANTS: Final = "group.participants"
GROUP_UPDATED: Final = "group.updated"
EventType = Literal["message.inbound", "message.status", "message.media", "session.status", "phone.status",
                    "message.poll_vote", "group.participants", "group.updated"]
EVENT_TYPES: tuple[EventType, ...] = (MESSAGE_INBOUND, MESSAGE_STATUS, MESSAGE_MEDIA, SESSION_STATUS, PHONE_STATUS,
                                      MESSAGE_POLL_VOTE, GROUP_PARTICIPANTS, GROUP_UPDATED)


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
