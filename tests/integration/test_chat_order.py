"""Per-chat order against real PostgreSQL and Redis: numbers in commit order, holding, releasing, repair."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging import chat_order, store
from bisnesgpt.messaging.errors import EarlierMessagePending
from bisnesgpt.messaging.outbox import OutboxReconciler
from bisnesgpt.messaging.queues import WWEBJS, QueueProducer
from bisnesgpt.messaging.send_store import PgSendStore

pytestmark = pytest.mark.integration

CHAT = "60123456789@c.us"


async def accept(db: Database, *, chat_id: str = CHAT, ordered: bool = True) -> store.MessageRecord:
    """What the accept transaction does for per-chat order: the chat's next number, then the insert."""
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
        seq = await chat_order.next_seq(conn, "acme", 0, chat_id) if ordered else None
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs",
            connection_type="wwebjs", chat_id=chat_id, message_type="text",
            payload={"type": "text", "text": {"body": "x"}}, queue_name=WWEBJS.name, process_name="wwebjs",
            chat_seq=seq))
        assert record is not None
    return record


async def job_exists(redis_url: str, message_id: str) -> bool:
    client = redis_client(redis_url)
    try:
        return bool(await client.exists(f"bull:{WWEBJS.name}:{message_id}"))
    finally:
        await client.aclose()


async def test_numbers_follow_commit_order_under_concurrent_accepts(db: Database) -> None:
    # Seed the chat's row: the very first insert of a key is a race of its own (ON CONFLICT waits too).
    await accept(db)
    seen: list[tuple[int, int]] = []

    async def one() -> None:
        async with db.transaction() as conn:
            seq = await chat_order.next_seq(conn, "acme", 0, CHAT)
            await asyncio.sleep(random.uniform(0, 0.02))
            # Every message numbered below this one has committed already: numbers are commit order.
            committed_before = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE chat_id = $1 AND chat_seq < $2", CHAT, seq)
            seen.append((seq, committed_before))
            await store.insert_outbound(conn, store.NewOutboundMessage(
                message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs",
                connection_type="wwebjs", chat_id=CHAT, message_type="text", payload={}, queue_name=WWEBJS.name,
                process_name="wwebjs", chat_seq=seq))

    await asyncio.gather(*(one() for _ in range(30)))
    assert sorted(seq for seq, _ in seen) == list(range(2, 32))
    assert all(before == seq - 1 for seq, before in seen), sorted(seen)


async def test_an_ordered_message_is_not_claimed_while_an_earlier_one_is_unfinished(db: Database,
                                                                                    redis_url: str) -> None:
    producer = QueueProducer(redis_url)
    pg = PgSendStore(db, producer)
    try:
        first, second, third = [await accept(db) for _ in range(3)]
        unordered = await accept(db, ordered=False)
        other_chat = await accept(db, chat_id="60199999999@c.us")
        with pytest.raises(EarlierMessagePending) as held:
            await pg.claim(second, source="wwebjs", process_name="w")
        assert held.value.waiting_for == first.message_id
        row = await db.fetchrow("SELECT status, attempts FROM messages WHERE id = $1", second.id)
        assert (row["status"], row["attempts"]) == ("queued", 0)  # held: not claimed, no attempt used
        assert await pg.claim(unordered, source="wwebjs", process_name="w") == 1  # no order: never held
        assert await pg.claim(other_chat, source="wwebjs", process_name="w") == 1  # another chat flows
        assert await pg.claim(first, source="wwebjs", process_name="w") == 1
        with pytest.raises(EarlierMessagePending):  # still sending: the chat waits
            await pg.claim(second, source="wwebjs", process_name="w")

        await pg.record_sent(first, "ext-1", {}, source="wwebjs")
        assert await job_exists(redis_url, second.message_id)  # released: the next one has its job
        assert not await job_exists(redis_url, third.message_id)
        assert await pg.claim(second, source="wwebjs", process_name="w") == 1
        with pytest.raises(EarlierMessagePending):
            await pg.claim(third, source="wwebjs", process_name="w")

        # Failing for good releases the chat too.
        await pg.record_failed(second, code="131026", title="undeliverable", details=None, source="wwebjs")
        assert await job_exists(redis_url, third.message_id)
        assert await pg.claim(third, source="wwebjs", process_name="w") == 1
    finally:
        await producer.close()


async def test_a_message_accepted_while_the_head_ends_is_released_or_sees_it_ended(db: Database,
                                                                                   redis_url: str) -> None:
    """The head ends while the next accept's transaction is open: the chat's lock makes either the
    ending enqueue the follower (the accept committed first) or the accept find itself the head."""
    producer = QueueProducer(redis_url)
    pg = PgSendStore(db, producer)
    heads_at_accept: list[bool] = []

    async def accept_and_check() -> store.MessageRecord:
        async with db.transaction() as conn:
            seq = await chat_order.next_seq(conn, "acme", 0, CHAT)
            record = await store.insert_outbound(conn, store.NewOutboundMessage(
                message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs",
                connection_type="wwebjs", chat_id=CHAT, message_type="text", payload={}, queue_name=WWEBJS.name,
                process_name="wwebjs", chat_seq=seq))
            assert record is not None
            await asyncio.sleep(random.uniform(0, 0.03))
            head = await chat_order.chat_head(conn, "acme", 0, CHAT)  # what SendService asks before enqueueing
            heads_at_accept.append(head is not None and head.id == record.id)
            await asyncio.sleep(random.uniform(0, 0.03))
        return record

    try:
        for _ in range(12):
            head = await accept(db)
            assert await pg.claim(head, source="wwebjs", process_name="w") == 1
            accepting = asyncio.create_task(accept_and_check())
            await asyncio.sleep(random.uniform(0, 0.05))
            await pg.record_sent(head, f"ext-{head.message_id}", {}, source="wwebjs")
            follower = await accepting
            assert await job_exists(redis_url, follower.message_id) or heads_at_accept[-1], \
                "the follower has no job and did not see itself head: it would wait for the reconciler"
            assert await pg.claim(follower, source="wwebjs", process_name="w") == 1
            await pg.record_sent(follower, f"ext-{follower.message_id}", {}, source="wwebjs")
    finally:
        await producer.close()


async def test_the_reconciler_enqueues_chat_heads_only(db: Database, redis_url: str) -> None:
    producer = QueueProducer(redis_url)
    redis = redis_client(redis_url)
    try:
        first, second, third = [await accept(db) for _ in range(3)]
        unordered = await accept(db, ordered=False)
        reconciler = OutboxReconciler(db, redis, producer, min_age_seconds=0)
        report = await reconciler.run_pass()
        assert report.enqueued == 2  # the head and the unordered message; the rest wait for their turn
        assert await job_exists(redis_url, first.message_id) and await job_exists(redis_url, unordered.message_id)
        assert not await job_exists(redis_url, second.message_id)
        # The head ended but its release never reached Redis (a crash between commit and enqueue).
        await db.execute("UPDATE messages SET status = 'sent' WHERE id = $1", first.id)
        await reconciler.run_pass()
        assert await job_exists(redis_url, second.message_id)
        assert not await job_exists(redis_url, third.message_id)
    finally:
        await producer.close()
        await redis.aclose()
