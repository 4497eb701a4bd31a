"""Set-based batch writes of the send store against real PostgreSQL: the rows a batched claim and
``sent`` write are the rows each write alone writes (history, events, deliveries, sessions, heads)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import chat_order, store
from bisnesgpt.messaging.errors import EarlierMessagePending
from bisnesgpt.messaging.queues import META, QueueSpec
from bisnesgpt.messaging.send_store import PgSendStore
from bisnesgpt.messaging.states import advance_status
from bisnesgpt.messaging.write_batch import WriteBatcher

pytestmark = pytest.mark.integration

# (chat, ordered) of each message m0..m5 of a company.
MESSAGES = [("601@c.us", True), ("601@c.us", True), ("602@c.us", True), ("603@c.us", False),
            ("603@c.us", False), ("604@c.us", True)]


class _Producer:
    """Records the jobs a chat release adds."""

    def __init__(self) -> None:
        self.added: list[str] = []

    async def add(self, spec: QueueSpec, job_id: str, data: Mapping[str, object], *, delay_ms: int = 0) -> None:
        self.added.append(job_id)


async def _company(db: Database, company: str) -> list[store.MessageRecord]:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ($1, $1)", company)
        await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                           "VALUES ($1, 0, 'meta_direct')", company)
        for n, (types, enabled) in enumerate([([], True), (["message.status"], True), ([], False),
                                              (["message.inbound"], True)]):
            await conn.execute("INSERT INTO webhook_endpoints (id, company_id, url, event_types, enabled, "
                               "secret_encrypted) VALUES ($1, $2, 'http://x', $3, $4, 's')",
                               f"{company}-ep{n}", company, types, enabled)
    records = []
    for n, (chat, ordered) in enumerate(MESSAGES):
        async with db.transaction() as conn:
            seq = await chat_order.next_seq(conn, company, 0, chat) if ordered else None
            record = await store.insert_outbound(conn, store.NewOutboundMessage(
                message_id=f"{company}-m{n}", company_id=company, phone_index=0, provider="meta",
                connection_type="meta_direct", chat_id=chat, message_type="text",
                payload={"type": "text", "text": {"body": f"b{n}"}}, queue_name=META.name, process_name="meta",
                chat_seq=seq))
            assert record is not None
            records.append(record)
    async with db.transaction() as conn:  # m5 is cancelled before it is claimed
        await advance_status(conn, records[5].id, "cancelled", source="api")
    return records


def _plain(result: object) -> object:
    return ("earlier", result.waiting_for) if isinstance(result, EarlierMessagePending) else result


async def _scenario(db: Database, company: str, batcher: WriteBatcher | None) -> tuple[list[Any], list[str]]:
    records = await _company(db, company)
    producer = _Producer()
    send_store = PgSendStore(db, producer, batcher=batcher)  # type: ignore[arg-type]
    m = {n: record for n, record in enumerate(records)}

    async def claim(n: int) -> object:
        try:
            return await send_store.claim(m[n], source="meta", process_name=f"proc-{n % 2}")
        except EarlierMessagePending as held:
            return held

    async def sent(n: int) -> None:
        await send_store.record_sent(m[n], f"wamid.{n}", {"profile": n}, source="meta")

    answers: list[Any] = []
    phases: list[list[tuple[str, int]]] = [
        [("claim", n) for n in range(6)],
        [("sent", 0), ("sent", 2), ("sent", 3), ("sent", 4), ("sent", 5)],
        [("claim", 1), ("claim", 0), ("claim", 3)],
        [("sent", 1), ("sent", 0), ("sent", 4)],
    ]
    for phase in phases:
        calls = [claim(n) if kind == "claim" else sent(n) for kind, n in phase]
        if batcher is not None:
            results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        else:
            results = [await call for call in calls]
        answers.append([_plain(result) for result in results])
    return answers, producer.added


async def _rows(db: Database, company: str) -> dict[str, Any]:
    def norm(value: object) -> object:
        return value.replace(company, "C") if isinstance(value, str) else value

    def rows(records: list[Any], skip: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(norm(v) for k, v in dict(r).items() if k not in skip) for r in records]

    messages = await db.fetch(
        "SELECT message_id, status, external_id, attempts, process_name, error_code, queued_at IS NOT NULL, "
        "sent_at IS NOT NULL, chat_seq FROM messages WHERE company_id = $1 ORDER BY message_id", company)
    history = await db.fetch(
        "SELECT m.message_id, h.from_status, h.to_status, h.source, h.detail, h.applied, h.provider_at "
        "FROM message_status_history h JOIN messages m ON m.id = h.message_pk WHERE m.company_id = $1 "
        "ORDER BY m.message_id, h.id", company)
    events = await db.fetch(
        "SELECT data->>'message_id' AS message, phone_index, type, data::text AS data, raw FROM tenant_events "
        "WHERE company_id = $1 ORDER BY data->>'message_id', id", company)
    deliveries = await db.fetch(
        "SELECT ev.data->>'message_id' AS message, ev.data->>'status' AS status, d.endpoint_id, d.origin, d.status "
        "FROM webhook_deliveries d JOIN tenant_events ev ON ev.id = d.event_id WHERE d.company_id = $1 "
        "ORDER BY 1, ev.id, d.endpoint_id", company)
    sessions = await db.fetch(
        "SELECT contact, last_outbound_at IS NOT NULL, last_inbound_at FROM conversation_sessions "
        "WHERE company_id = $1 ORDER BY contact", company)
    return {"messages": rows(messages), "history": rows(history), "events": rows(events),
            "deliveries": rows(deliveries), "sessions": rows(sessions)}


async def test_batched_claims_and_sents_write_the_rows_each_write_alone_writes(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bisnesgpt.messaging.write_batch")
    alone, alone_heads = await _scenario(db, "solo", None)
    batcher = WriteBatcher(db, max_items=100, max_delay_ms=20)
    batched, batched_heads = await _scenario(db, "many", batcher)
    assert (batcher.batches, batcher.writes) == (4, 17)  # one transaction per phase, none run again
    assert "one by one" not in caplog.text

    def norm(value: object) -> object:
        if isinstance(value, tuple):
            return tuple(norm(v) for v in value)
        return value.replace("solo", "C").replace("many", "C") if isinstance(value, str) else value

    assert [[norm(a) for a in phase] for phase in batched] == [[norm(a) for a in phase] for phase in alone]
    assert batched[0][1] == ("earlier", "many-m0") and batched[0][5] is None and batched[2] == [1, None, None]
    assert [norm(h) for h in batched_heads] == [norm(h) for h in alone_heads] == ["C-m1"]
    assert await _rows(db, "many") == await _rows(db, "solo")
    assert len((await _rows(db, "many"))["deliveries"]) > 0
