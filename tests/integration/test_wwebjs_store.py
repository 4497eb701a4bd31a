"""The engine's database side: inbound storage and acks, session leases, the session store."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs import store
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.driver_events import DeliveryAck, InboundMessage
from bisnesgpt.engines.wwebjs.inbound import InboundRecorder
from bisnesgpt.engines.wwebjs.leases import SessionLeases
from bisnesgpt.messaging import store as messages
from bisnesgpt.messaging.states import advance_status

pytestmark = pytest.mark.integration

KEY = SessionKey("acme", 0)


async def seed(db: Database) -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme'), ('other', 'Other')")
    await db.execute("INSERT INTO phone_configs (company_id, phone_index) VALUES ('acme', 0), ('other', 0)")


async def test_inbound_is_stored_once_with_its_event(db: Database) -> None:
    await seed(db)
    recorder = InboundRecorder(db)
    message = InboundMessage("3AINBOUND", "60199@c.us", "60199", 1_700_000_000, "text", text="hello",
                             push_name="Customer")
    assert await recorder.on_inbound(KEY, message) is True
    assert await recorder.on_inbound(KEY, message) is True  # a redelivery: acknowledged, not stored twice
    rows = await db.fetch("SELECT * FROM messages WHERE direction = 'inbound'")
    assert len(rows) == 1 and (rows[0]["external_id"], rows[0]["content"], rows[0]["chat_id"]) == (
        "3AINBOUND", "hello", "60199@c.us")
    events = await db.fetch("SELECT data FROM tenant_events WHERE type = 'message.inbound'")
    assert len(events) == 1 and events[0]["data"]["push_name"] == "Customer"
    window = await db.fetchrow("SELECT last_inbound_at FROM conversation_sessions WHERE contact = '60199'")
    assert window is not None and window["last_inbound_at"] is not None
    assert (recorder.stored, recorder.duplicates) == (1, 1)
    # The same provider id on another phone is another message.
    assert await recorder.on_inbound(SessionKey("other", 0), message)
    assert await db.fetchval("SELECT count(*) FROM messages WHERE direction = 'inbound'") == 2


async def test_acks_move_states_forward_only_and_wait_for_the_external_id(db: Database) -> None:
    await seed(db)
    async with db.transaction() as conn:
        record = await messages.insert_outbound(conn, messages.NewOutboundMessage(
            message_id="m1", company_id="acme", phone_index=0, provider="wwebjs", connection_type="wwebjs",
            chat_id="60111@c.us", message_type="text", payload={"type": "text", "text": {"body": "x"}},
            queue_name="wwebjs-messages", process_name="wwebjs"))
        assert record is not None
        await messages.claim_for_send(conn, record.id, source="wwebjs", process_name="wwebjs")
    recorder = InboundRecorder(db)
    confirmed: list[str] = []

    async def confirm() -> None:
        confirmed.append("device")

    # The receipt comes before the worker recorded the id: not applied yet, retried shortly.
    assert await recorder.on_ack(KEY, DeliveryAck("3EB0M1", "device", confirm=confirm)) is False
    async with db.transaction() as conn:
        await advance_status(conn, record.id, "sent", source="wwebjs", external_id="3EB0M1")
    for _ in range(50):
        if confirmed:
            break
        await asyncio.sleep(0.1)
    assert confirmed == ["device"]
    assert await db.fetchval("SELECT status FROM messages WHERE id = $1", record.id) == "delivered"
    assert await recorder.on_ack(KEY, DeliveryAck("3EB0M1", "read")) is True
    assert await recorder.on_ack(KEY, DeliveryAck("3EB0M1", "device")) is True  # late: no step back
    assert await db.fetchval("SELECT status FROM messages WHERE id = $1", record.id) == "read"
    # Another company's session cannot move this message.
    async with db.transaction() as conn:
        await advance_status(conn, record.id, "read", source="t")
    assert await recorder.on_ack(SessionKey("other", 0), DeliveryAck("3EB0M1", "read")) is False
    await recorder.close()


async def test_every_receipt_is_kept_with_whatsapps_time_and_inbound_keeps_the_senders_time(db: Database) -> None:
    await seed(db)
    async with db.transaction() as conn:
        record = await messages.insert_outbound(conn, messages.NewOutboundMessage(
            message_id="m2", company_id="acme", phone_index=0, provider="wwebjs", connection_type="wwebjs",
            chat_id="60111@c.us", message_type="text", payload={"type": "text", "text": {"body": "x"}},
            queue_name="wwebjs-messages", process_name="wwebjs"))
        assert record is not None
        await messages.claim_for_send(conn, record.id, source="wwebjs", process_name="wwebjs")
        await advance_status(conn, record.id, "sent", source="wwebjs", external_id="3EB0M2")
    recorder = InboundRecorder(db)
    sent, delivered, read = 1_700_000_010.5, 1_700_000_020.25, 1_700_000_030.0
    # The read receipt first, then the server and device receipts WhatsApp sent earlier.
    for level, at in (("read", read), ("server", sent), ("device", delivered)):
        assert await recorder.on_ack(KEY, DeliveryAck("3EB0M2", level, at=at)) is True  # type: ignore[arg-type]
    row = await db.fetchrow("SELECT * FROM messages WHERE id = $1", record.id)
    assert row is not None and row["status"] == "read"
    assert [row[c].timestamp() for c in ("sent_at", "delivered_at", "read_at")] == [sent, delivered, read]
    steps = [(r["to_status"], r["applied"], r["provider_at"].timestamp() if r["provider_at"] else None)
             for r in await db.fetch("SELECT * FROM message_status_history WHERE message_pk = $1 ORDER BY id",
                                     record.id)]
    assert steps[3:] == [("read", True, read), ("sent", False, sent), ("delivered", False, delivered)]

    message = InboundMessage("3AINBOUND2", "60199@c.us", "60199", 1_700_000_000, "text", text="hello")
    assert await recorder.on_inbound(KEY, message) is True
    inbound = await db.fetchrow("SELECT * FROM messages WHERE external_id = '3AINBOUND2'")
    assert inbound is not None and inbound["provider_timestamp"].timestamp() == 1_700_000_000
    assert inbound["delivered_at"] > inbound["provider_timestamp"]  # when it reached us, not when it was sent
    await recorder.close()


async def test_leases_one_holder_standby_release_and_dead_holder_takeover(db: Database) -> None:
    a = SessionLeases(db, f"wwebjs@{socket.gethostname()}:{os.getpid()}:aaaaaa", 10)
    b = SessionLeases(db, f"wwebjs@{socket.gethostname()}:{os.getppid()}:bbbbbb", 10)
    names = [KEY.lease_name, SessionKey("acme", 1).lease_name]
    assert await a.acquire(names) == set(names)
    assert await b.acquire(names, observe=names) == set()
    assert b.others == {name: a.holder for name in names}
    assert a.held(KEY.lease_name) and not b.held(KEY.lease_name)
    assert await a.acquire(names) == set(names)  # renewal
    await a.release([KEY.lease_name])
    assert await b.acquire(names) == {KEY.lease_name}

    # A holder on this host whose pid is gone (kill -9) is taken over at once, a live one is not.
    dead_pid = 4_000_000  # above pid_max: never a live process
    dead = SessionLeases(db, f"wwebjs@{socket.gethostname()}:{dead_pid}:dddddd", 60)
    other_name = SessionKey("acme", 2).lease_name
    assert await dead.acquire([other_name]) == {other_name}
    assert await b.acquire([other_name]) == {other_name}
    assert await a.acquire([KEY.lease_name]) == set()  # b (the parent pid) is alive
    remote = SessionLeases(db, f"wwebjs@some-other-host:{dead_pid}:eeeeee", 60)
    remote_name = SessionKey("acme", 3).lease_name
    assert await remote.acquire([remote_name]) == {remote_name}
    assert await b.acquire([remote_name]) == set()  # another host's pid says nothing here


async def test_the_session_store_keeps_credentials_encrypted(db: Database) -> None:
    await seed(db)
    auth = store.AuthStore(SecretBox(b"k" * 32), "sandbox")
    async with db.transaction() as conn:
        await auth.save(conn, KEY, {"deviceId": "60123:7@s.whatsapp.net", "secret": "s3cret"},
                        device_id="60123:7@s.whatsapp.net", phone_number="60123")
        raw = await conn.fetchval("SELECT auth_state FROM wwebjs_sessions WHERE company_id = 'acme'")
        assert "s3cret" not in raw and raw.startswith("v2:")
        assert await auth.load(conn, KEY) == {"deviceId": "60123:7@s.whatsapp.net", "secret": "s3cret"}
        assert await store.AuthStore(SecretBox(b"k" * 32), "neonize").load(conn, KEY) is None
        await store.trip_breaker(conn, KEY, "flapping")
        phones = {p.key: p for p in await store.wwebjs_phones(conn)}
        assert phones[KEY].should_run is False and phones[KEY].breaker_reason == "flapping"
        await store.set_desired_state(conn, KEY, "running")
        phones = {p.key: p for p in await store.wwebjs_phones(conn)}
        assert phones[KEY].should_run is True
        await auth.clear(conn, KEY)
        assert await auth.load(conn, KEY) is None


class FlakyDatabase:
    """The real database, unavailable for the next ``down`` transactions (a PostgreSQL restart)."""

    def __init__(self, db: Database, down: int) -> None:
        self.db = db
        self.down = down

    def transaction(self):  # type: ignore[no-untyped-def]
        if self.down > 0:
            self.down -= 1
            raise DatabaseUnavailable("PostgreSQL unavailable: the database system is shutting down")
        return self.db.transaction()


async def test_inbound_and_acks_during_a_postgres_outage_are_stored_in_the_background(db: Database) -> None:
    """Not lost, not left for a redelivery that needs a reconnect: retried until stored, then confirmed."""
    await seed(db)
    async with db.transaction() as conn:
        record = await messages.insert_outbound(conn, messages.NewOutboundMessage(
            message_id="m2", company_id="acme", phone_index=0, provider="wwebjs", connection_type="wwebjs",
            chat_id="60111@c.us", message_type="text", payload={"type": "text", "text": {"body": "x"}},
            queue_name="wwebjs-messages", process_name="wwebjs"))
        assert record is not None
        await messages.claim_for_send(conn, record.id, source="wwebjs", process_name="wwebjs")
        await advance_status(conn, record.id, "sent", source="wwebjs", external_id="3EB0M2")
    flaky = FlakyDatabase(db, down=4)
    recorder = InboundRecorder(flaky)  # type: ignore[arg-type]
    confirmed: list[str] = []

    def confirmer(what: str):  # type: ignore[no-untyped-def]
        async def confirm() -> None:
            confirmed.append(what)
        return confirm

    inbound = InboundMessage("3AOUTAGE", "60199@c.us", "60199", 1_700_000_000, "text", text="during the outage",
                             confirm=confirmer("inbound"))
    assert await recorder.on_inbound(KEY, inbound) is False  # not stored yet: not confirmed yet
    assert await recorder.on_ack(KEY, DeliveryAck("3EB0M2", "device", confirm=confirmer("ack"))) is False
    for _ in range(100):
        if len(confirmed) == 2:
            break
        await asyncio.sleep(0.1)
    assert sorted(confirmed) == ["ack", "inbound"]
    assert await db.fetchval("SELECT content FROM messages WHERE external_id = '3AOUTAGE'") == "during the outage"
    assert await db.fetchval("SELECT status FROM messages WHERE id = $1", record.id) == "delivered"
    await recorder.close()
