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
instead: the same statements, in a transaction shared with other jobs' writes, each method
returning once the transaction holding its write has committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import chat_order, store
from bisnesgpt.messaging.chat_order import ChatHead, ChatRelease
from bisnesgpt.messaging.errors import EarlierMessagePending
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.messaging.states import advance_status
from bisnesgpt.messaging.write_batch import WriteBatcher

if TYPE_CHECKING:
    from bisnesgpt.messaging.send_processor import OutcomeFence

log = logging.getLogger(__name__)

# After a send, recording ``sent`` is retried in place this long (a PostgreSQL restart)
# before the job is given back: a re-run would send the message a second time.
RECORD_SENT_PATIENCE_S = 15.0
RECORD_SENT_FIRST_PAUSE_S = 0.2
RECORD_SENT_MAX_PAUSE_S = 2.0
T = TypeVar("T")


class PgSendStore:
    """The ``messages`` rows of send jobs, read and written in the processor's transactions."""

    def __init__(self, db: Database, producer: QueueProducer, *, patience_s: float = RECORD_SENT_PATIENCE_S,
                 batcher: WriteBatcher | None = None) -> None:
        self.db = db
        self.release = ChatRelease(producer)
        self.patience_s = patience_s
        self.batcher = batcher

    async def _write(self, message: store.MessageRecord, write: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``write`` committed: in the batcher's next transaction, or in one of its own."""
        if self.batcher is not None:
            return await self.batcher.run(f"{message.company_id}:{message.phone_index}:{message.chat_id}", write)
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

        claimed = await self._write(message, write)
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
                head = await self._write(message, write)
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
