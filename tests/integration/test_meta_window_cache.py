"""The meta engine's window check remembers open windows only: one read per contact, never a stale answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.window import OpenWindows, TemplateRequired
from bisnesgpt.messaging.store import touch_inbound_session
from tests.support.clock import ManualClock
from tests.support.pipeline import seed_tenant

pytestmark = pytest.mark.integration


async def inbound(db: Database, contact: str, at: datetime) -> None:
    async with db.connection() as conn:
        await touch_inbound_session(conn, "acme", 0, contact, at)


async def test_an_open_window_is_read_once_and_a_closed_one_every_time(db: Database) -> None:
    await seed_tenant(db, "acme", {0: "meta_direct"})
    clock = ManualClock()
    windows = OpenWindows(db, 60.0, clock=clock)
    await inbound(db, "60100000001", datetime.now(UTC) - timedelta(hours=1))
    for _ in range(3):
        await windows.check("acme", 0, "60100000001", "text")
    assert windows.reads == 1
    await windows.check("acme", 0, "60100000001", "template")  # templates never need the window
    assert windows.reads == 1

    # Never written: refused, and read again each time (the contact may write at any moment).
    for _ in range(2):
        with pytest.raises(TemplateRequired, match="never written"):
            await windows.check("acme", 0, "60100000002", "text")
    assert windows.reads == 3
    await inbound(db, "60100000002", datetime.now(UTC))
    await windows.check("acme", 0, "60100000002", "text")  # the inbound message is seen at once
    assert windows.reads == 4

    # Past the TTL the row is read again: a deleted row stops counting.
    await db.execute("DELETE FROM conversation_sessions WHERE contact = '60100000001'")
    await windows.check("acme", 0, "60100000001", "text")
    clock.now += 61
    with pytest.raises(TemplateRequired):
        await windows.check("acme", 0, "60100000001", "text")


async def test_a_remembered_window_still_closes_24_hours_after_the_last_inbound(db: Database) -> None:
    await seed_tenant(db, "acme", {0: "meta_direct"})
    windows = OpenWindows(db, 3600.0)
    # Seen open with little time left: remembered with its time, so it closes on time.
    await inbound(db, "60100000003", datetime.now(UTC) - timedelta(hours=24) + timedelta(seconds=1.5))
    await windows.check("acme", 0, "60100000003", "text")
    await asyncio.sleep(2)
    with pytest.raises(TemplateRequired, match="more than 24 hours ago"):
        await windows.check("acme", 0, "60100000003", "text")
