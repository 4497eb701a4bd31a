"""Per-phone anti-ban controls over company defaults over the WWEBJS_* settings, in real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.antiban import AntiBan
from bisnesgpt.engines.wwebjs.antiban_settings import (
    AntiBanOverrides,
    company_overrides,
    load_overrides,
    load_policy,
    save_overrides,
)
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.queues import WWEBJS

pytestmark = pytest.mark.integration


async def seed(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme'), ('other', 'Other')")
        await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                           "VALUES ('acme', 0, 'wwebjs'), ('acme', 1, 'wwebjs'), ('other', 0, 'wwebjs')")


async def sent(db: Database, phone_index: int, chat: str, *, out: bool = True) -> store.MessageRecord:
    async with db.transaction() as conn:
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id="acme", phone_index=phone_index, provider="wwebjs",
            connection_type="wwebjs", chat_id=chat, message_type="text", payload={"type": "text", "text": {
                "body": "x"}}, queue_name=WWEBJS.name, process_name="wwebjs"))
        assert record is not None
        if out:
            await conn.execute("UPDATE messages SET sent_at = now() WHERE id = $1", record.id)
    return record


async def test_the_phone_overrides_the_company_which_overrides_the_settings(db: Database) -> None:
    await seed(db)
    settings = Settings(wwebjs_daily_message_cap=50, wwebjs_send_jitter_ms=300, wwebjs_simulate_typing=False)
    async with db.transaction() as conn:
        await save_overrides(conn, "acme", None, AntiBanOverrides(daily_message_cap=10, simulate_typing=True))
        await save_overrides(conn, "acme", 1, AntiBanOverrides(daily_message_cap=2, daily_cap_action="fail"))
    async with db.connection() as conn:
        zero = await load_policy(conn, settings, "acme", 0)
        one = await load_policy(conn, settings, "acme", 1)
        elsewhere = await load_policy(conn, settings, "other", 0)
    assert (zero.daily_message_cap, zero.simulate_typing, zero.send_jitter_ms, zero.daily_cap_action) == (
        10, True, 300, "wait")
    assert (zero.sources["daily_message_cap"], zero.sources["send_jitter_ms"]) == ("company", "global")
    assert (one.daily_message_cap, one.daily_cap_action, one.simulate_typing) == (2, "fail", True)
    assert (one.sources["daily_message_cap"], one.sources["simulate_typing"]) == ("phone", "company")
    assert elsewhere.daily_message_cap == 50 and set(elsewhere.sources.values()) == {"global"}

    # The cap of phone 1 applies to phone 1 only.
    antiban = AntiBan(settings, db)
    for _ in range(2):
        await sent(db, 1, "60100000001@c.us")
        await sent(db, 0, "60100000001@c.us")
    with pytest.raises(PermanentSendError) as failed:
        await antiban.check_caps(await sent(db, 1, "60100000001@c.us", out=False))
    assert failed.value.code == "DAILY_LIMIT_REACHED" and "(2/2 today)" in failed.value.detail
    await antiban.check_caps(await sent(db, 0, "60100000001@c.us", out=False))  # 3 of the company's 10

    # Clearing every control removes the row; removing the phone removes its controls.
    async with db.transaction() as conn:
        phone, company = await load_overrides(conn, "acme", 1)
        await save_overrides(conn, "acme", 1, phone.changed({"daily_message_cap": None, "daily_cap_action": None}))
        assert set((await company_overrides(conn, "acme")).keys()) == {("acme", None)}
        await save_overrides(conn, "acme", 0, AntiBanOverrides(warmup_days=3))
        await conn.execute("DELETE FROM phone_configs WHERE company_id = 'acme' AND phone_index = 0")
        assert set((await company_overrides(conn, None)).keys()) == {("acme", None)}
    assert company == AntiBanOverrides(daily_message_cap=10, simulate_typing=True)


async def test_values_a_control_cannot_take_are_refused(db: Database) -> None:
    for name, value in (("daily_message_cap", -1), ("daily_message_cap", True), ("warmup_days", 366),
                        ("daily_cap_action", "explode"), ("simulate_typing", "yes"), ("send_jitter_ms", 60_001),
                        ("colour", 1)):
        with pytest.raises(ValidationFailed):
            AntiBanOverrides().changed({name: value})
    await seed(db)
    with pytest.raises(Exception, match="check"):  # the table refuses what the code would not write
        await db.execute("INSERT INTO wwebjs_antiban_settings (company_id, daily_message_cap) VALUES ('acme', -5)")
