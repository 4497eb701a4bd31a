"""``PgSendStore``: the send processor's ``SendStore`` over PostgreSQL.

Each method is one transaction, as the processor ran them when it held the connection
itself: loading the message, or recording a Node-format job's (or finding it again); the claim for
an attempt; ``sent`` with the provider id together with the conversation's last outbound
time; ``failed`` with the provider's code, title and details (behind the engine's fence, when
given, in the same transaction). Recording ``sent`` is
patient: the message has left already, so a PostgreSQL restart is waited out in place
rather than handing the job back (a re-run would send it a second time).

Ending an ordered message (``sent`` or ``failed``) locks its chat first and, after the
commit, enqueues the chat's next message (``chat_order``).

Given a ``WriteBatcher`` (the meta engine), the claim and the two endings are handed to it
instead, in a transaction shared with other jobs' writes, each method returning once the
transaction holding its write has committed. The claims of a batch are then one statement
(``claim_for_send_batch``), and so are its ``sent`` records (``record_sent_batch``, after one
``lock_chat_sequences`` for their ordered chats): the same rows as each one's own statements
would write, in the same order. Run alone (no batcher, or a batch run again one by one) each
is its own statements as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.core.ids import new_event_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging import chat_order, store
from bisnesgpt.messaging.chat_order import ChatHead, ChatRelease
from bisnesgpt.messaging.errors import EarlierMessagePending
from bisnesgpt.messaging.events import MESSAGE_STATUS
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.messaging.states import advance_status
from bisnesgpt.messaging.write_batch import BatchWrite, WriteBatcher

if TYPE_CHECKING:
    from bisnesgpt.messaging.send_processor import OutcomeFence

log = logging.getLogger(__name__)

# After a send, recording ``sent`` is retried in place this long (a PostgreSQL restart)
# before the job is given back: a re-run would send the message a second time.
RECORD_SENT_PATIENCE_S = 15.0
RECORD_SENT_FIRST_PAUSE_S = 0.2
RECORD_SENT_MAX_PAUSE_S = 2.0
T = TypeVar("T")
ItemT = TypeVar("ItemT")
SQL = load_queries("bisnesgpt.messaging")


class PgSendStore:
    """The ``messages`` rows of send jobs, read and written in the processor's transactions."""

    def __init__(self, db: Database, producer: QueueProducer, *, patience_s: float = RECORD_SENT_PATIENCE_S,
                 batcher: WriteBatcher | None = None) -> None:
        self.db = db
        self.release = ChatRelease(producer)
        self.patience_s = patience_s
        self.batcher = batcher

    async def _write(self, message: store.MessageRecord, write: Callable[[asyncpg.Connection], Awaitable[T]], *,
                     together: BatchWrite[ItemT, T] | None = None, item: ItemT | None = None) -> T:
        """``write`` committed: in the batcher's next transaction (as ``together`` for ``item``
        with the batch's others when given), or in one of its own."""
        if self.batcher is not None:
            return await self.batcher.run(f"{message.company_id}:{message.phone_index}:{message.chat_id}", write,
                                          together=together, item=item)
        async with self.db.transaction() as conn:
            return await write(conn)

    async def load(self, message_id: str, company_id: str | None) -> store.MessageRecord | None:
        """The message (of any company when ``company_id`` is None)."""
        async with self.db.connection() as conn:
            return await store.load_message(conn, message_id, company_id)

    async def record_node_job(self, new: store.NewOutboundMessage) -> store.MessageRecord:
        """A Node-format job's message, stored now or found from an earlier run (``JobRefused`` otherwise)."""
        async with self.db.transaction() as conn:
            return await store.record_node_job(conn, new)

    async def claim(self, message: store.MessageRecord, *, source: str, process_name: str) -> int | None:
        """``sending`` for one more attempt: the attempt number, or None if it may not be sent now."""
        async def write(conn: asyncpg.Connection) -> int | EarlierMessagePending | None:
            try:
                return await store.claim_for_send(conn, message.id, source=source, process_name=process_name)
            except EarlierMessagePending as held:  # an answer, not a failure of the batch
                return held

        claimed = await self._write(message, write, together=claim_batch,
                                    item=_Claim(message.id, source, process_name))
        if isinstance(claimed, EarlierMessagePending):
            raise claimed
        return claimed

    async def record_sent(self, message: store.MessageRecord, external_id: str, detail: JsonObject, *,
                          source: str) -> None:
        """``sent`` with the provider's id, and the conversation's last outbound time.

        A ``DatabaseUnavailable`` is retried with a growing pause for ``patience_s``, then raised.
        """
        async def write(conn: asyncpg.Connection) -> ChatHead | None:
            await chat_order.lock_chat(conn, message)
            await advance_status(conn, message.id, "sent", source=source, external_id=external_id, detail=detail)
            await store.touch_outbound_session(conn, message.company_id, message.phone_index, message.contact)
            return await chat_order.next_after(conn, message)

        give_up = time.monotonic() + self.patience_s
        pause = RECORD_SENT_FIRST_PAUSE_S
        while True:
            try:
                head = await self._write(message, write, together=record_sent_batch,
                                         item=_Sent(message, external_id, detail, source))
                break
            except DatabaseUnavailable as exc:
                if time.monotonic() + pause > give_up:
                    raise
                log.warning("message %s sent (%s) but not recorded yet: %s; retrying", message.message_id,
                            external_id, exc.detail)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECORD_SENT_MAX_PAUSE_S)
        await self.release.enqueue(head)

    async def record_failed(self, message: store.MessageRecord, *, code: str, title: str, details: JsonValue,
                            source: str, fence: OutcomeFence | None = None) -> None:
        """``failed`` for good, with the provider's (or our) error code, title and details."""
        async def write(conn: asyncpg.Connection) -> ChatHead | None:
            if fence is not None:  # LeaseLost: this process may not decide the outcome any more
                await fence(conn, message)
            await chat_order.lock_chat(conn, message)
            await advance_status(conn, message.id, "failed", source=source, error_code=code, error_title=title,
                                 error_details=details)
            return await chat_order.next_after(conn, message)

        head = await self._write(message, write)
        await self.release.enqueue(head)  # a message that failed for good lets its chat go on


@dataclass(frozen=True)
class _Claim:
    """One message to claim in a batch (``claim_batch``)."""

    message_pk: int
    source: str
    process_name: str


async def claim_batch(conn: asyncpg.Connection, items: list[_Claim]) -> list[int | EarlierMessagePending | None]:
    """``store.claim_for_send`` of each message (distinct ones), in one statement: each one's
    attempt number, its ``EarlierMessagePending`` (as a result), or None."""
    rows = await conn.fetch(SQL.claim_for_send_batch, [item.message_pk for item in items],
                            [item.source for item in items], [item.process_name for item in items])
    results: list[int | EarlierMessagePending | None] = []
    for row in rows:  # one per item, in their order
        if row["waiting_for"] is not None and row["previous_status"] in store.CLAIMABLE:
            results.append(EarlierMessagePending(row["waiting_for"]))
        elif row["attempts"] is None:
            results.append(None)
        else:
            results.append(int(row["attempts"]))
    return results


@dataclass(frozen=True)
class _Sent:
    """One message to record ``sent`` in a batch (``record_sent_batch``)."""

    message: store.MessageRecord
    external_id: str
    detail: JsonObject
    source: str


async def record_sent_batch(conn: asyncpg.Connection, items: list[_Sent]) -> list[ChatHead | None]:
    """What ``PgSendStore.record_sent``'s write does, for messages of distinct chats: their
    ordered chats locked (one statement), then every message's ``sent``, history row, event with
    its deliveries, conversation time and chat head (another); each one's head to enqueue."""
    ordered = [item.message for item in items if item.message.chat_seq is not None]
    if ordered:
        await conn.execute(SQL.lock_chat_sequences, [m.company_id for m in ordered],
                           [m.phone_index for m in ordered], [m.chat_id for m in ordered])
    messages = [item.message for item in items]
    rows = await conn.fetch(
        SQL.record_sent_batch, [m.id for m in messages], [item.source for item in items],
        [item.external_id for item in items], [json.dumps(item.detail or {}) for item in items],
        [new_event_id() for _ in items], [m.company_id for m in messages], [m.phone_index for m in messages],
        [m.chat_id for m in messages], [m.contact for m in messages], [m.chat_seq is not None for m in messages],
        MESSAGE_STATUS,
    )
    heads = {int(row["ord"]): ChatHead.from_row(row) for row in rows}
    return [heads.get(n) for n in range(1, len(items) + 1)]
