"""The anti-ban caps against real PostgreSQL: what counts as sent today and as a new chat, the
warm-up schedule, and "wait" deferring a send to the next UTC day (the "fail" action and the
rest run end to end in tests/e2e/test_wwebjs_antiban.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.antiban import AntiBan, warmup_cap, warmup_day
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError
from bisnesgpt.messaging.queues import WWEBJS

pytestmark = pytest.mark.integration


async def message(db: Database, chat: str, *, sent_at: datetime | None = None, inbound: bool = False
                  ) -> store.MessageRecord:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
        await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                           "VALUES ('acme', 0, 'wwebjs') ON CONFLICT DO NOTHING")
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs",
            connection_type="wwebjs", chat_id=chat, message_type="text", payload={"type": "text", "text": {
                "body": "x"}}, queue_name=WWEBJS.name, process_name="wwebjs"))
        assert record is not None
        if inbound:
            await conn.execute("UPDATE messages SET direction = 'inbound' WHERE id = $1", record.id)
        if sent_at is not None:
            await conn.execute("UPDATE messages SET sent_at = $2 WHERE id = $1", record.id, sent_at)
    return record


def test_the_warm_up_schedule() -> None:
    assert [warmup_cap(100, 5, day) for day in range(1, 8)] == [20, 40, 60, 80, 100, 100, 100]
    assert [warmup_cap(3, 10, day) for day in (1, 4, 10)] == [1, 2, 3]  # never 0 a day
    assert warmup_cap(0, 5, 1) == 0 and warmup_cap(50, 0, 1) == 50  # no cap, no warm-up
    paired = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)
    assert warmup_day(paired, paired + timedelta(hours=2)) == 1 and warmup_day(paired, paired + timedelta(days=2)) == 3
    assert warmup_day(None, paired) is None


async def test_counts_of_today_new_chats_and_the_wait_until_tomorrow(db: Database) -> None:
    now = datetime.now(UTC)
    await message(db, "60100000001@c.us", sent_at=now - timedelta(days=2))  # an old chat
    await message(db, "60100000001@c.us", sent_at=now)
    await message(db, "60100000002@c.us", sent_at=now)  # opened today
    await message(db, "60100000003@c.us", inbound=True)  # wrote to us
    await message(db, "60100000003@c.us", sent_at=now)
    await db.execute("INSERT INTO wwebjs_sessions (company_id, phone_index, paired_at) VALUES ('acme', 0, $1)",
                     now - timedelta(days=30))
    settings = Settings(wwebjs_daily_message_cap=4, wwebjs_daily_new_chat_cap=1, wwebjs_warmup_days=7)
    antiban = AntiBan(settings, db)
    to_new = await message(db, "60100000009@c.us")
    limits = await antiban.limits(to_new)
    assert (limits.sent_today, limits.new_chats_today, limits.opens_chat, limits.warmup_day) == (3, 1, True, None)
    assert (limits.message_cap, limits.new_chat_cap) == (4, 1)
    with pytest.raises(DeferSend) as deferred:
        await antiban.check_caps(to_new)  # the "wait" action: the send waits for the next day
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    assert "new-chat cap reached (1/1 today)" in deferred.value.detail
    assert abs(deferred.value.delay_ms / 1000 - (tomorrow - datetime.now(UTC)).total_seconds()) < 60
    to_known = await message(db, "60100000003@c.us")
    await antiban.check_caps(to_known)  # an existing chat: the message cap (3 of 4) still allows it
    await message(db, "60100000003@c.us", sent_at=now)
    with pytest.raises(PermanentSendError) as failed:
        await AntiBan(settings.model_copy(update={"wwebjs_daily_cap_action": "fail"}), db).check_caps(to_known)
    assert failed.value.code == "DAILY_LIMIT_REACHED" and "message cap reached (4/4 today)" in failed.value.detail
