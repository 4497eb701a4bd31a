"""The dashboard's services over real PostgreSQL and Redis (BullMQ): queue actions with the
operator re-queue, the per-minute metrics rollup and the charts read from it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import Conflict, NotFound
from bisnesgpt.dashboard import charts, messages
from bisnesgpt.dashboard.queues import JobFilter, QueueAdmin
from bisnesgpt.dashboard.requeue import requeue_failed
from bisnesgpt.dashboard.rollup import MetricsRollup
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import WWEBJS
from bisnesgpt.messaging.send_processor import SendJobProcessor, SendReceipt
from bisnesgpt.messaging.send_store import PgSendStore
from bisnesgpt.messaging.states import advance_status
from bisnesgpt.processes.context import ProcessContext
from tests.support.health import new_context
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


@dataclass
class FailFirstEngine:
    """The first send of each message fails for good (131026); later sends succeed."""

    provider: str = "wwebjs"
    calls: dict[str, int] = field(default_factory=dict)

    async def before_send(self, message: store.MessageRecord) -> None:
        return None

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        self.calls[message.message_id] = self.calls.get(message.message_id, 0) + 1
        if self.calls[message.message_id] == 1:
            raise PermanentSendError("recipient cannot receive", code="131026", title="Message undeliverable")
        return SendReceipt(external_id=f"ext-{message.message_id}")


@pytest.fixture
async def ctx(db: Database, database_url: str, redis_url: str) -> AsyncIterator[ProcessContext]:
    settings = Settings(encryption_key=SecretStr("ab" * 32))
    context = new_context(settings, "api", "api", database_url=database_url, redis_url=redis_url, db=db)
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme')")
    yield context
    await context.queues.close()
    await context.redis.aclose()


async def outbound(db: Database, text: str = "hello") -> store.MessageRecord:
    async with db.transaction() as conn:
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs", connection_type="wwebjs",
            chat_id="60123456789@c.us", message_type="text", payload={"type": "text", "text": {"body": text}},
            queue_name=WWEBJS.name, process_name="wwebjs", content=text))
    assert record is not None
    return record


async def status_of(db: Database, message_id: str) -> str:
    return str(await db.fetchval("SELECT status FROM messages WHERE message_id = $1", message_id))


async def test_a_failed_send_job_is_retried_with_its_message_requeued(ctx: ProcessContext, db: Database) -> None:
    admin = QueueAdmin(ctx)
    worker = QueueWorker(ctx.redis_url, WWEBJS,
                         SendJobProcessor(PgSendStore(db, ctx.queues), FailFirstEngine(), WWEBJS, process_name="w"))
    await worker.start()
    try:
        first, second = await outbound(db), await outbound(db)
        for record in (first, second):
            await ctx.queues.add(WWEBJS, record.message_id, {"messageId": record.message_id, "companyId": "acme",
                                                             "phoneIndex": 0})

        async def both_failed() -> bool:
            view = await admin.queue_view(WWEBJS.name)
            return view["counts"]["failed"] == 2

        await eventually(both_failed, timeout=30, what="two failed jobs")
        listed = await admin.failed_jobs(WWEBJS.name)
        assert listed["total"] == 2
        job = next(j for j in listed["jobs"] if j["id"] == first.message_id)
        assert job["message"]["status"] == "failed" and job["message"]["errorCode"] == "131026"
        assert job["failedReason"] and job["attemptsMade"] >= 1
        assert (await admin.queue_view(WWEBJS.name))["ratePerMinute"]["failed"] == 2

        # Retry: the message goes failed -> queued (operator, with the old error), then out.
        result = await admin.retry(WWEBJS.name, first.message_id, by="admin")
        assert result["messageRequeued"] is True

        async def sent() -> bool:
            return await status_of(db, first.message_id) == "sent"

        await eventually(sent, timeout=30, what="the retried message sent")
        # Completed jobs are removed as they finish; the last hour's count comes from the event stream.
        view = await admin.queue_view(WWEBJS.name)
        assert view["counts"]["completed"] == 0
        assert view["lastHour"]["completed"] == 1 and view["lastHour"]["failed"] == 2
        assert view["lastHour"]["trimmed"] is False
        history = await db.fetch("SELECT h.from_status, h.to_status, h.source, h.detail FROM message_status_history h "
                                 "JOIN messages m ON m.id = h.message_pk WHERE m.message_id = $1 ORDER BY h.id",
                                 first.message_id)
        steps = [(h["from_status"], h["to_status"], h["source"]) for h in history]
        assert steps[-4:] == [("sending", "failed", "wwebjs"), ("failed", "queued", "operator"),
                              ("queued", "sending", "wwebjs"), ("sending", "sent", "wwebjs")]
        requeue = history[-3]["detail"]
        assert requeue["by"] == "admin" and requeue["previousError"]["code"] == "131026"
        row = await db.fetchrow("SELECT error_code, failed_at FROM messages WHERE message_id = $1", first.message_id)
        assert row is not None and row["error_code"] is None and row["failed_at"] is None
        statuses = [r["data"]["status"] for r in await db.fetch(
            "SELECT data FROM tenant_events WHERE data->>'message_id' = $1 ORDER BY created_at, id", first.message_id)]
        assert statuses == ["queued", "failed", "queued", "sent"]
        assert await db.fetchval("SELECT count(*) FROM process_events WHERE event_type = 'dashboard.queue.retry'") == 1

        # A message that went out meanwhile is not retried (it would not be sent twice).
        await db.execute("UPDATE messages SET status = 'sent' WHERE message_id = $1", second.message_id)
        with pytest.raises(Conflict, match="already sent"):
            await admin.retry(WWEBJS.name, second.message_id, by="admin")
        with pytest.raises(NotFound):
            await admin.retry(WWEBJS.name, first.message_id, by="admin")  # completed: removed (removeOnComplete)
        with pytest.raises(NotFound):
            await admin.retry("no-such-queue", "x", by="admin")
        assert (await admin.remove(WWEBJS.name, second.message_id, by="admin"))["removed"] is True
        assert (await admin.queue_view(WWEBJS.name))["counts"]["failed"] == 0

        # Pause and resume are global (BullMQ's own flag).
        assert (await admin.pause(WWEBJS.name, by="admin"))["paused"] is True
        assert (await admin.queue_view(WWEBJS.name))["paused"] is True
        await admin.resume(WWEBJS.name, by="admin")
        assert (await admin.queue_view(WWEBJS.name))["paused"] is False
        assert (await admin.clean_completed(WWEBJS.name, by="admin"))["removed"] == 0  # removeOnComplete
    finally:
        await worker.close(timeout=5)


async def test_retry_all_failed_requeues_each_failed_message(ctx: ProcessContext, db: Database) -> None:
    admin = QueueAdmin(ctx)
    engine = FailFirstEngine()
    worker = QueueWorker(ctx.redis_url, WWEBJS, SendJobProcessor(PgSendStore(db, ctx.queues), engine, WWEBJS,
                                                                 process_name="w"))
    await worker.start()
    try:
        records = [await outbound(db, f"m{i}") for i in range(3)]
        for record in records:
            await ctx.queues.add(WWEBJS, record.message_id, {"messageId": record.message_id, "companyId": "acme",
                                                             "phoneIndex": 0})

        async def all_failed() -> bool:
            return (await admin.queue_view(WWEBJS.name))["counts"]["failed"] == 3

        await eventually(all_failed, timeout=30, what="three failed jobs")
        # The browser's view of them: paged, filtered by error code and company, in full.
        page = await admin.jobs(WWEBJS.name, "failed", start=0, limit=2)
        assert page["total"] == 3 and len(page["jobs"]) == 2 and page["jobs"][0]["state"] == "failed"
        assert page["jobs"][0]["opts"]["attempts"] == WWEBJS.attempts and page["jobs"][0]["message"] is not None
        assert (await admin.jobs(WWEBJS.name, "failed", start=2, limit=2))["jobs"][0]["id"] not in {
            j["id"] for j in page["jobs"]}
        assert (await admin.jobs(WWEBJS.name, "failed", filters=JobFilter(error_code="131026")))["total"] == 3
        assert (await admin.jobs(WWEBJS.name, "failed", filters=JobFilter(error_code="190")))["total"] == 0
        assert (await admin.jobs(WWEBJS.name, "failed", filters=JobFilter(company_id="beta")))["total"] == 0
        # A filtered bulk retry leaves the others alone.
        nothing = await admin.retry_all_failed(WWEBJS.name, by="admin", filters=JobFilter(phone_index=5))
        assert nothing["done"] == 0 and nothing["remaining"] == 3
        result = await admin.retry_all_failed(WWEBJS.name, by="admin",
                                              filters=JobFilter(company_id="acme", error_code="131026"))
        assert result["done"] == 3 and result["skippedCount"] == 0

        async def all_sent() -> bool:
            return {await status_of(db, r.message_id) for r in records} == {"sent"}

        await eventually(all_sent, timeout=30, what="every retried message sent")
    finally:
        await worker.close(timeout=5)


async def test_requeue_is_only_for_failed_outbound_messages(ctx: ProcessContext, db: Database) -> None:
    record = await outbound(db)
    async with db.transaction() as conn:
        outcome = await requeue_failed(conn, record.id, by="admin", queue=WWEBJS.name)
    assert not outcome.requeued and outcome.previous_status == "queued"
    async with db.transaction() as conn:
        await advance_status(conn, record.id, "sending", source="test")
        await advance_status(conn, record.id, "sent", source="test", external_id="x1")
        assert not (await requeue_failed(conn, record.id, by="admin", queue=WWEBJS.name)).requeued
        await conn.execute("UPDATE messages SET status = 'failed', direction = 'inbound' WHERE id = $1", record.id)
        assert not (await requeue_failed(conn, record.id, by="admin", queue=WWEBJS.name)).requeued
        missing = await requeue_failed(conn, 10**12, by="admin", queue=WWEBJS.name)
    assert not missing.requeued and missing.previous_status is None
    assert await status_of(db, record.message_id) == "failed"


async def test_the_rollup_counts_each_minute_once_and_the_charts_show_it(ctx: ProcessContext, db: Database) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minute = now - timedelta(minutes=3)
    rows: list[tuple[Any, ...]] = [
        # (provider, created_at, sent_at, failed_at, error_code)
        ("meta", minute + timedelta(seconds=1), minute + timedelta(seconds=1.2), None, None),
        ("meta", minute + timedelta(seconds=2), minute + timedelta(seconds=3), None, None),
        ("wwebjs", minute + timedelta(seconds=5), minute + timedelta(seconds=5.5), None, None),
        ("meta", minute + timedelta(seconds=7), None, minute + timedelta(seconds=8), "131026"),
        ("meta", minute + timedelta(seconds=9), None, minute + timedelta(seconds=9.5), "131026"),
        ("wwebjs", minute + timedelta(seconds=9), None, minute + timedelta(seconds=10), "SESSION_LOGGED_OUT"),
    ]
    for i, (provider, created, sent, failed, code) in enumerate(rows):
        await db.execute(
            """INSERT INTO messages (message_id, company_id, chat_id, message_type, provider, status, created_at,
                                     sent_at, failed_at, error_code)
               VALUES ($1, 'acme', '60123456789@c.us', 'text', $2, $3, $4, $5, $6, $7)""",
            f"r{i}", provider, "sent" if sent else "failed", created, sent, failed, code)
    # A failure an operator re-queued before the rollup still counts (its error is in the history row).
    requeued = await db.fetchval(
        """INSERT INTO messages (message_id, company_id, chat_id, message_type, provider, status, created_at,
                                 failed_at, error_code)
           VALUES ('r-requeued', 'acme', '60123456789@c.us', 'text', 'meta', 'failed', $1, $2, '131047')
           RETURNING id""", minute + timedelta(seconds=11), minute + timedelta(seconds=12))
    async with db.transaction() as conn:
        assert (await requeue_failed(conn, requeued, by="admin", queue="meta-messages")).requeued
    rollup = MetricsRollup(ctx.db, ctx.process_name)  # run_once without the lease loop
    assert await rollup.run_once() >= 59  # the first run backfills an hour (59 in the 5 s after a minute starts)
    assert await rollup.run_once() <= 1  # continues from the watermark (a minute may just have completed)
    duplicates = await db.fetchval("SELECT count(*) FROM (SELECT 1 FROM process_metrics WHERE metric_name = "
                                   "'messages_sent' GROUP BY timestamp, metadata HAVING count(*) > 1) d")
    assert duplicates == 0

    def metric(name: str) -> str:
        return (f"SELECT metadata, metric_value FROM process_metrics WHERE metric_name = '{name}' "
                "AND timestamp = $1 ORDER BY metadata::text")

    sent = {r["metadata"]["provider"]: r["metric_value"] for r in await db.fetch(metric("messages_sent"), minute)}
    assert sent == {"meta": 2, "wwebjs": 1}
    failed = {(r["metadata"]["code"], r["metadata"]["provider"]): r["metric_value"]
              for r in await db.fetch(metric("messages_failed"), minute)}
    assert failed == {("131026", "meta"): 2, ("131047", "meta"): 1, ("SESSION_LOGGED_OUT", "wwebjs"): 1}
    p50 = {r["metadata"]["provider"]: r["metric_value"] for r in await db.fetch(metric("send_latency_p50_ms"), minute)}
    assert p50 == {"meta": pytest.approx(600, abs=1), "wwebjs": pytest.approx(500, abs=1)}
    quiet = await db.fetch(metric("messages_sent"), minute - timedelta(minutes=1))
    assert {r["metadata"]["provider"]: r["metric_value"] for r in quiet} == {"meta": 0, "wwebjs": 0}

    data = await charts.chart_data(db, "hour")
    assert data["bucketSeconds"] == 60 and len(data["x"]) == 60
    at = data["x"].index(int(minute.timestamp()))
    series = {s["label"]: s["values"] for s in data["charts"]["sent"]["series"]}
    assert series["meta"][at] == 2 and series["wwebjs"][at] == 1
    failures = {s["label"]: s["values"][at] for s in data["charts"]["failed"]["series"]}
    assert failures == {"131026": 2, "131047": 1, "SESSION_LOGGED_OUT": 1}
    latency = {s["label"]: s["values"][at] for s in data["charts"]["latency"]["series"]}
    assert latency["meta p50"] == pytest.approx(600, abs=1) and latency["meta p99"] == pytest.approx(990, abs=2)
    day = await charts.chart_data(db, "day")
    assert day["bucketSeconds"] == 600 and len(day["x"]) == 144


async def test_charts_show_minutes_the_rollup_has_not_reached_yet(db: Database) -> None:
    """A minute that ended but is not rolled up yet (the rollup waits for it to settle) is
    read from `messages`, so the charts never have a gap between "this minute" and the rollup."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    earlier, pending = now - timedelta(minutes=3), now - timedelta(minutes=2)
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
    # The rollup has reached `earlier` only (one quiet minute, as it records them).
    await db.execute("""INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp,
                                                     metadata)
                        VALUES ('api', 'messages_sent', 0, 'gauge', $1, '{"provider": "meta"}')""", earlier)
    for i, (sent, failed, code) in enumerate([(pending + timedelta(seconds=5), None, None),
                                              (None, pending + timedelta(seconds=6), "131026")]):
        await db.execute(
            """INSERT INTO messages (message_id, company_id, chat_id, message_type, provider, status, created_at,
                                     sent_at, failed_at, error_code)
               VALUES ($1, 'acme', '60123456789@c.us', 'text', 'meta', $2, $3, $4, $5, $6)""",
            f"p{i}", "sent" if sent else "failed", pending, sent, failed, code)
    data = await charts.chart_data(db, "hour")
    at = data["x"].index(int(pending.timestamp()))
    assert {s["label"]: s["values"][at] for s in data["charts"]["sent"]["series"]} == {"meta": 1}
    assert {s["label"]: s["values"][at] for s in data["charts"]["failed"]["series"]} == {"131026": 1}
    day = await charts.chart_data(db, "day")
    # The day view has ten-minute buckets: one failure is 0.1 per minute there.
    assert sum(v or 0 for s in day["charts"]["failed"]["series"] for v in s["values"]) == pytest.approx(0.1)


@dataclass
class SlowDownThenOkEngine:
    """Every send answers "slow down" (a provider-given delay) until ``recovered`` is set."""

    provider: str = "wwebjs"
    recovered: bool = False
    calls: int = 0

    async def before_send(self, message: store.MessageRecord) -> None:
        return None

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        from bisnesgpt.messaging.errors import RetryableSendError

        self.calls += 1
        if not self.recovered:
            raise RetryableSendError("slow down", code="130429", retry_after_ms=20)
        return SendReceipt(external_id=f"ext-{message.message_id}")


async def test_an_operator_retry_gets_a_fresh_attempt_budget(ctx: ProcessContext, db: Database) -> None:
    engine = SlowDownThenOkEngine()
    worker = QueueWorker(ctx.redis_url, WWEBJS, SendJobProcessor(PgSendStore(db, ctx.queues), engine, WWEBJS,
                                                                 process_name="w"))
    await worker.start()
    try:
        record = await outbound(db)
        await ctx.queues.add(WWEBJS, record.message_id, {"messageId": record.message_id, "companyId": "acme",
                                                         "phoneIndex": 0})

        async def failed() -> bool:
            return await status_of(db, record.message_id) == "failed"

        await eventually(failed, timeout=30, what="the message failed after its attempts")
        assert engine.calls == WWEBJS.attempts
        engine.recovered = True
        await QueueAdmin(ctx).retry(WWEBJS.name, record.message_id, by="admin")

        async def sent() -> bool:
            return await status_of(db, record.message_id) == "sent"

        await eventually(sent, timeout=30, what="the retried message sent")
        assert engine.calls == WWEBJS.attempts + 1  # one more try was enough, not refused at once
    finally:
        await worker.close(timeout=5)


async def test_the_message_list_pages_by_row_and_filters(ctx: ProcessContext, db: Database) -> None:
    records = [await outbound(db, f"page text {i}") for i in range(55)]
    first = await messages.search(ctx, "acme", None)
    assert first["matchedBy"] == "recent" and len(first["data"]) == 50 and first["next"] is not None
    second = await messages.search(ctx, "acme", None, messages.MessageFilter(before=first["next"]))
    assert len(second["data"]) == 5 and second["next"] is None
    shown = [m.messageId for m in first["data"] + second["data"]]
    assert shown == [r.message_id for r in reversed(records)]  # newest first, each once
    assert (await messages.search(ctx, "acme", None, messages.MessageFilter(direction="inbound")))["data"] == []
    assert len((await messages.search(ctx, "acme", None, messages.MessageFilter(engine="wwebjs", phone_index=0,
                                                                               status="queued")))["data"]) == 50
    found = await messages.search(ctx, "acme", "text 54")
    assert found["matchedBy"] == "text" and [m.messageId for m in found["data"]] == [records[54].message_id]
    partial = await messages.search(ctx, "acme", records[3].message_id[-12:])
    assert [m.messageId for m in partial["data"]] == [records[3].message_id]
    assert (await messages.search(ctx, "beta", "text 54"))["data"] == []  # another company sees none
