"""Reading and writing ``messages`` rows: the queries the pipeline and the engines share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord
from bisnesgpt.messaging.errors import EarlierMessagePending, JobRefused
from bisnesgpt.messaging.events import MESSAGE_STATUS, record_tenant_event
from bisnesgpt.messaging.states import MessageState

SQL = load_queries("bisnesgpt.messaging")


Direction = Literal["outbound", "inbound"]
# States a message may be claimed for sending from (``claim_for_send``).
CLAIMABLE: frozenset[str] = frozenset({"accepted", "queued", "sending"})


@dataclass(frozen=True, kw_only=True)
class MessageColumns:
    """The columns a message is stored with however it came: whose, to or from whom, what, how it travels."""

    message_id: str
    company_id: str
    phone_index: int
    provider: str
    connection_type: str | None
    chat_id: str
    message_type: str
    payload: JsonObject  # the Cloud-API-shaped body (see ``drafts``), or the parsed inbound message
    queue_name: str | None
    process_name: str | None
    content: str | None = None
    media_url: str | None = None
    media_id: str | None = None
    media_mime_type: str | None = None
    media_filename: str | None = None
    raw: JsonObject | None = None  # the provider's original (inbound), or the original Node job
    context_message_id: str | None = None
    idempotency_key: str | None = None
    source: str = "api"
    deadline_at: datetime | None = None
    # Its place among its chat's ordered messages (None: sent without per-chat order).
    chat_seq: int | None = None
    external_ref: str | None = None  # its id where it came from (a Node-format job's id)


@dataclass(frozen=True, kw_only=True)
class MessageRecord(MessageColumns, RowRecord):
    """A ``messages`` row: an outbound message in the send pipeline, or one received."""

    id: int
    direction: Direction
    status: MessageState
    external_id: str | None
    error_code: str | None
    error_title: str | None
    error_details: JsonValue
    attempts: int
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    pricing: JsonObject | None = None  # Meta's latest `pricing` block (billable, category, pricing_model)
    conversation: JsonObject | None = None  # Meta's latest `conversation` block (id, origin.type, expiration)
    provider_timestamp: datetime | None = None  # inbound: the provider's time of the message

    @property
    def contact(self) -> str:
        """The recipient's digits (``60123456789`` from ``60123456789@c.us``)."""
        return self.chat_id.split("@", 1)[0]


@dataclass(frozen=True, kw_only=True)
class NewOutboundMessage(MessageColumns):
    """What ``insert_outbound`` stores for a message accepted for sending (it starts ``queued``)."""

    queue_name: str
    process_name: str


async def insert_outbound(conn: asyncpg.Connection, new: NewOutboundMessage) -> MessageRecord | None:
    """Insert a ``queued`` outbound message with its first history row (None if it exists)."""
    row = await conn.fetchrow(SQL.insert_outbound, *_outbound_columns(new), new.chat_seq)
    if row is None:
        return None
    return await _queued(conn, MessageRecord.from_row(row), new)


def _outbound_columns(new: NewOutboundMessage) -> tuple[object, ...]:
    """Parameters $1 to $20 of both outbound inserts (``insert_outbound``, ``insert_node_job``): the same columns."""
    return (new.message_id, new.company_id, new.phone_index, new.provider, new.connection_type, new.chat_id,
            new.message_type, new.content, new.media_url, new.media_id, new.media_mime_type, new.media_filename,
            new.payload, new.raw, new.context_message_id, new.idempotency_key, new.queue_name, new.process_name,
            new.source, new.deadline_at)


async def _queued(conn: asyncpg.Connection, message: MessageRecord, new: NewOutboundMessage) -> MessageRecord:
    """A new message's first history row and its ``queued`` tenant event."""
    await conn.execute(SQL.insert_queued_history, message.id, new.source, {"queue": new.queue_name})
    await record_tenant_event(
        conn, company_id=message.company_id, phone_index=message.phone_index, type=MESSAGE_STATUS,
        data={"message_id": message.message_id, "external_id": None, "chat_id": message.chat_id,
              "direction": "outbound", "provider": message.provider, "status": "queued", "previous_status": None},
    )
    return message


async def record_node_job(conn: asyncpg.Connection, new: NewOutboundMessage) -> MessageRecord:
    """The message of a Node-format job: stored now, or the one an earlier run of the job stored.

    Raises ``JobRefused`` for an unknown company or phone, and when the job's queue already
    has a message under this job id with other content (a reused or reset Node job id).
    """
    target = await conn.fetchrow(SQL.select_send_target, new.company_id, new.phone_index)
    assert target is not None
    if not target["company_found"]:
        raise JobRefused(f"company {new.company_id!r} does not exist: create it (`bisnesgpt companies add`) "
                         "or fix the job's companyId", code="COMPANY_NOT_FOUND")
    if not target["phone_found"]:
        raise JobRefused(f"company {new.company_id!r} has no phone {new.phone_index}: add it (`bisnesgpt phones "
                         "add`) or fix the job's phoneIndex", code="PHONE_NOT_FOUND")
    row = await conn.fetchrow(SQL.insert_node_job, *_outbound_columns(new), new.external_ref)
    if row is not None:
        return await _queued(conn, MessageRecord.from_row(row), new)
    existing = await MessageRecord.fetch_one(conn, SQL.select_message_by_external_ref, new.queue_name,
                                             new.external_ref)
    if existing is None:  # the unique index said it exists; only a concurrent delete gets here
        raise JobRefused(f"job {new.external_ref} of {new.queue_name}: its message vanished while recording it",
                         code="MESSAGE_NOT_FOUND")
    if _content(existing) != _content(new):
        raise JobRefused(
            f"job id {new.external_ref} of {new.queue_name} already belongs to message {existing.message_id} "
            f"(company {existing.company_id}, {existing.chat_id}) with other content: the Node job id was reused; "
            "give each job its own id (BullMQ's own counter, or a unique jobId)", code="JOB_ID_COLLISION")
    return existing


def _content(message: MessageColumns) -> tuple[object, ...]:
    """What makes two Node jobs the same message: whose, which phone, to whom, and what."""
    return (message.company_id, message.phone_index, message.chat_id, message.message_type, message.payload)


async def load_message(conn: asyncpg.Connection, message_id: str, company_id: str | None) -> MessageRecord | None:
    """A message by our id, within ``company_id`` (or of any company when None)."""
    return await MessageRecord.fetch_one(conn, SQL.select_message, message_id, company_id)


async def load_message_pk(conn: asyncpg.Connection, message_pk: int) -> MessageRecord | None:
    """A message by its row id."""
    return await MessageRecord.fetch_one(conn, SQL.select_message_by_pk, message_pk)


async def find_outbound_by_external_id(conn: asyncpg.Connection, external_id: str) -> MessageRecord | None:
    """The newest outbound message the provider knows by ``external_id`` (status webhooks, acks)."""
    return await MessageRecord.fetch_one(conn, SQL.select_outbound_by_external_id, external_id)


async def claim_for_send(conn: asyncpg.Connection, message_pk: int, *, source: str, process_name: str) -> int | None:
    """Mark a message ``sending`` for one more attempt; None if it may not be sent.

    Raises ``EarlierMessagePending`` for an ordered message while one accepted before it
    for the same chat is unfinished.
    """
    row = await conn.fetchrow(SQL.claim_for_send, message_pk, source, process_name)
    if row is not None and row["waiting_for"] is not None and row["previous_status"] in CLAIMABLE:
        raise EarlierMessagePending(row["waiting_for"])
    if row is None or row["attempts"] is None:
        return None
    return int(row["attempts"])


async def touch_outbound_session(conn: asyncpg.Connection, company_id: str, phone_index: int, contact: str) -> None:
    """Note that the conversation with ``contact`` had an outbound message now."""
    await conn.execute(SQL.touch_outbound_session, company_id, phone_index, contact)


async def touch_inbound_session(
    conn: asyncpg.Connection, company_id: str, phone_index: int, contact: str, at: datetime
) -> None:
    """Note an inbound message from ``contact`` at ``at`` (opens Meta's 24-hour window; never moved back)."""
    await conn.execute(SQL.touch_inbound_session, company_id, phone_index, contact, at)
