"""Per-chat order: messages to one chat are handed to the provider in acceptance order.

Three pieces, each a statement in a transaction that already exists:

* **number** — the accept transaction takes the chat's next ``chat_seq`` (``next_seq``: an
  upsert of its ``chat_sequences`` row, locked until commit, so numbers follow commit order
  whichever API instance accepts). Only the chat's *head* (its earliest unfinished ordered
  message) gets a job at once; the others wait without one.
* **hold** — ``claim_for_send`` refuses an ordered message while a message of its chat with a
  lower number is unfinished (``EarlierMessagePending``: the job is delayed, no attempt used).
  This alone keeps the order, whatever job runs when.
* **release** — the transaction that ends a message (``sent``/``failed``) first locks its
  chat's row (``lock_chat``), then reads the chat's new head (``chat_head``), which the
  caller enqueues after the commit (``ChatRelease``). The lock makes a concurrent accept
  either commit before (and be found here) or see this message ended (and enqueue itself).
  A crash between the commit and the enqueue leaves a head without a job, which the outbox
  reconciler enqueues (it enqueues heads only).

Retries and deferrals hold back only their own chat: the other chats' heads have jobs of
their own. A message ``chat_seq IS NULL`` is unordered and takes part in none of this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from bisnesgpt.core.errors import QueueUnavailable
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord
from bisnesgpt.messaging.node_jobs import send_job_data
from bisnesgpt.messaging.queues import QUEUES_BY_NAME, QueueProducer
from bisnesgpt.messaging.states import MessageState
from bisnesgpt.messaging.store import MessageRecord

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.messaging")


@dataclass(frozen=True)
class ChatHead(RowRecord):
    """A chat's earliest unfinished ordered message: the one that may go out now."""

    id: int
    message_id: str
    company_id: str
    phone_index: int
    status: MessageState
    queue_name: str | None
    chat_seq: int


async def next_seq(conn: asyncpg.Connection, company_id: str, phone_index: int, chat_id: str) -> int:
    """The chat's next number; its row stays locked until the calling transaction ends."""
    return int(await conn.fetchval(SQL.next_chat_seq, company_id, phone_index, chat_id))


async def chat_head(conn: asyncpg.Connection, company_id: str, phone_index: int, chat_id: str) -> ChatHead | None:
    """The chat's earliest unfinished ordered message (None when every one has ended)."""
    return await ChatHead.fetch_one(conn, SQL.select_chat_head, company_id, phone_index, chat_id)


async def lock_chat(conn: asyncpg.Connection, message: MessageRecord) -> None:
    """Lock the chat of an ordered message before ending it (a no-op for an unordered one)."""
    if message.chat_seq is not None:
        await conn.execute(SQL.lock_chat_sequence, message.company_id, message.phone_index, message.chat_id)


async def next_after(conn: asyncpg.Connection, message: MessageRecord) -> ChatHead | None:
    """After ``message`` ended (in this transaction, chat locked): its chat's head to enqueue."""
    if message.chat_seq is None:
        return None
    return await chat_head(conn, message.company_id, message.phone_index, message.chat_id)


class ChatRelease:
    """Enqueues a chat's next head once the message before it ended (after the commit)."""

    def __init__(self, producer: QueueProducer) -> None:
        self.producer = producer
        self.released = 0

    async def enqueue(self, head: ChatHead | None) -> bool:
        """Add the head's job (BullMQ ignores an existing id); False when there was none to add or
        Redis is unavailable (the outbox reconciler enqueues heads without a job)."""
        if head is None or head.queue_name not in QUEUES_BY_NAME:
            return False
        try:
            await self.producer.add(QUEUES_BY_NAME[head.queue_name], head.message_id, send_job_data(head))
        except QueueUnavailable as exc:
            log.warning("message %s is next in its chat but not enqueued (%s); the outbox reconciler will",
                        head.message_id, exc.detail)
            return False
        self.released += 1
        return True
