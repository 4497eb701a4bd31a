"""The common accept in one PostgreSQL round trip, against real PostgreSQL and Redis.

Every statement the service sends is counted with asyncpg's query logger on the pool's one
connection: the common path is one statement (no BEGIN/COMMIT), and what it stores is what
the full path stored: the message, its history row, its event, the key's answer, the chat's
number and head. What the statement cannot settle (a replayed key, a closed window with a
key) still answers as before.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bisnesgpt.config import load_settings
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.window import TemplateRequired
from bisnesgpt.messaging.addressing import Recipient
from bisnesgpt.messaging.drafts import Draft
from bisnesgpt.messaging.idempotency import IdempotencyKey, fingerprint
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.messaging.router import MessageRouter
from bisnesgpt.messaging.sending import SendRequest, SendService
from bisnesgpt.messaging.store import touch_inbound_session
from tests.support.pipeline import seed_tenant
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

CHAT = "60123456789@c.us"


class Counted:
    """The statements sent on the pool's single connection."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def __call__(self, record: object) -> None:
        self.queries.append(str(getattr(record, "query", "")))


@pytest.fixture
async def one_conn(database_url: str) -> AsyncIterator[tuple[Database, Counted]]:
    db = Database(database_url, max_size=1, min_size=1)
    await db.open()
    counted = Counted()
    async with db.connection() as conn:  # the pool's only connection: the logger stays on it
        conn.add_query_logger(counted)
    yield db, counted
    await db.close()


@pytest.fixture
async def service(one_conn: tuple[Database, Counted], redis_url: str) -> AsyncIterator[SendService]:
    db, _ = one_conn
    await seed_tenant(db, "acme", {0: "wwebjs", 1: "meta_direct"})
    coordinator = Coordinator(redis_url, namespace=f"t-{uuid.uuid4().hex[:8]}", process_name="api", role="api",
                              host="h", peers={}, on_shutdown=lambda _reason: None)
    router = MessageRouter(db, load_settings(), coordinator, ttl_seconds=30)
    coordinator.start()  # the router caches only while it listens for changes
    await eventually(lambda: router.listening, timeout=10, what="router listening")
    producer = QueueProducer(redis_url)
    yield SendService(db, router, producer)
    await producer.close()
    await coordinator.stop()


def text(body: str, chat: str = CHAT) -> Draft:
    return Draft("text", {"body": body}, Recipient(chat, chat.partition("@")[0], False), content=body,
                 request={"message": body})


def key(name: str, body: str) -> IdempotencyKey:
    return IdempotencyKey("acme", name, fingerprint("POST", "/api/v2/messages/text", {"message": body}), "POST",
                          "/api/v2/messages/text")


async def test_a_common_send_is_one_statement_and_stores_everything(
        service: SendService, one_conn: tuple[Database, Counted]) -> None:
    db, counted = one_conn
    await service.router.route("acme", 0)  # the route is cached, as it is after the first send
    counted.queries.clear()
    outcome = await service.send(SendRequest("acme", 0, text("hi"), idempotency=key("k1", "hi")))
    assert outcome.status_code == 202 and outcome.enqueued
    assert len(counted.queries) == 1 and "accept_outbound" in counted.queries[0], counted.queries
    message_id = outcome.body["messageId"]
    row = await db.fetchrow("SELECT id, status, chat_seq, idempotency_key, raw FROM messages WHERE message_id = $1",
                            message_id)
    assert row is not None and row["status"] == "queued" and row["chat_seq"] == 1 and row["idempotency_key"] == "k1"
    assert row["raw"] == {"request": {"message": "hi"}}
    history = await db.fetch("SELECT from_status, to_status, source, detail FROM message_status_history "
                             "WHERE message_pk = $1", row["id"])
    assert [(h["from_status"], h["to_status"], h["source"], h["detail"]) for h in history] == [
        (None, "queued", "api", {"queue": "wwebjs-messages"})]
    event = await db.fetchrow("SELECT type, data FROM tenant_events WHERE data->>'message_id' = $1", message_id)
    assert event is not None and event["type"] == "message.status"
    assert event["data"]["status"] == "queued" and event["data"]["chat_id"] == CHAT
    stored = await db.fetchrow("SELECT state, response_status, response_body FROM idempotency_keys WHERE key = 'k1'")
    assert stored is not None and stored["state"] == "completed" and stored["response_status"] == 202
    assert stored["response_body"] == outcome.body

    # The same key again: the statement leaves it alone and the full path replays the answer.
    again = await service.send(SendRequest("acme", 0, text("hi"), idempotency=key("k1", "hi")))
    assert again.replayed and again.body["messageId"] == message_id
    assert await db.fetchval("SELECT count(*) FROM messages") == 1


async def test_the_second_message_of_a_chat_is_held_and_numbered(service: SendService,
                                                                one_conn: tuple[Database, Counted]) -> None:
    db, _ = one_conn
    first = await service.send(SendRequest("acme", 0, text("one")))
    second = await service.send(SendRequest("acme", 0, text("two")))
    unordered = await service.send(SendRequest("acme", 0, text("three"), ordered=False))
    assert first.enqueued and not second.enqueued and unordered.enqueued
    rows = await db.fetch("SELECT content, chat_seq FROM messages ORDER BY id")
    assert [(r["content"], r["chat_seq"]) for r in rows] == [("one", 1), ("two", 2), ("three", None)]


async def test_the_window_is_checked_in_the_statement(service: SendService,
                                                      one_conn: tuple[Database, Counted]) -> None:
    db, _ = one_conn
    stranger = "60177777777@c.us"  # seed_tenant opens the window of its own contacts only
    with pytest.raises(TemplateRequired, match="never written"):
        await service.send(SendRequest("acme", 1, text("hi", stranger)))
    async with db.connection() as conn:
        await touch_inbound_session(conn, "acme", 1, "60177777777", datetime.now(UTC) - timedelta(hours=25))
    with pytest.raises(TemplateRequired, match="more than 24 hours ago"):
        await service.send(SendRequest("acme", 1, text("hi", stranger), idempotency=key("k2", "hi")))
    # Refused: nothing stored, not even the key's claim.
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    async with db.connection() as conn:
        await touch_inbound_session(conn, "acme", 1, "60177777777", datetime.now(UTC))
    ok = await service.send(SendRequest("acme", 1, text("hi", stranger), idempotency=key("k2", "hi")))
    assert ok.status_code == 202 and ok.body["queueName"] == "meta-messages"
