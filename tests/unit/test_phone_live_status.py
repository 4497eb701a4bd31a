"""A phone's status as everyone shows it (``live_status``): the console's cards, ``/api/bot-status``
and ``phones list`` read it through the one function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bisnesgpt.api.phone_routes import phone_status_json
from bisnesgpt.api.phone_sessions import PhoneSession
from bisnesgpt.dashboard.phones import phone_card
from bisnesgpt.phones.live_status import live_status
from tests.unit.test_api_shapes import row

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def paused(minutes: int) -> dict[str, Any]:
    return {"reason": "sending paused for 3600 s: account restricted (368): Temporarily blocked", "code": "368",
            "pausedUntil": (NOW + timedelta(minutes=minutes)).isoformat()}


def test_a_pause_holds_until_its_end_and_then_reads_pending() -> None:
    held = live_status("paused", paused(30), now=NOW)
    assert held.status == "paused" and held.paused_until == NOW + timedelta(minutes=30)
    assert held.reason is not None and "368" in held.reason
    ended = live_status("paused", paused(-5), now=NOW)
    assert ended.status == "pending" and ended.paused_until is None
    assert ended.reason is not None and "ended at 09:55 UTC" in ended.reason
    # A pause without a readable end is not shown as one forever.
    assert live_status("paused", {"pausedUntil": "soon"}, now=NOW).status == "pending"


def test_statuses_other_than_a_pause_are_what_the_engine_recorded() -> None:
    assert live_status("ready", {"reason": "messages are being sent"}).status == "ready"
    assert live_status("error", {"error": "token expired (190)"}).reason == "token expired (190)"
    assert live_status(None, {}).status == "pending"
    assert live_status("something-new", {}).status == "pending"


def test_the_card_and_bot_status_say_the_same_for_a_paused_phone() -> None:
    until = datetime.now(UTC) + timedelta(minutes=30)
    metadata = {**paused(0), "pausedUntil": until.isoformat()}
    card = phone_card(PhoneSession.from_row(row(phone_index=1, connection_type="meta_direct", status="paused",
                                                metadata=metadata, last_activity=NOW)))
    assert card["status"] == "paused" and card["pausedUntil"] == until.isoformat()
    assert card["lastSeen"] == NOW.isoformat()  # the last message in or out, not the status write
    bot = phone_status_json({"phone_index": 1, "connection_type": "meta_direct", "process_name": "meta",
                             "config_status": "active", "display_phone_number": None, "configured": True,
                             "status": "paused", "phone_number": None, "last_seen": None, "metadata": metadata})
    assert (bot.status, bot.pausedUntil, bot.error) == ("paused", until.isoformat(), card["reason"])
    # Once the pause is over both read pending, with the same reason.
    over = {**metadata, "pausedUntil": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    card = phone_card(PhoneSession.from_row(row(phone_index=1, connection_type="meta_direct", status="paused",
                                                metadata=over)))
    bot = phone_status_json({"phone_index": 1, "connection_type": "meta_direct", "process_name": "meta",
                             "config_status": "active", "display_phone_number": None, "configured": True,
                             "status": "paused", "phone_number": None, "last_seen": None, "metadata": over})
    assert card["status"] == bot.status == "pending" and card["reason"] == bot.error and bot.pausedUntil is None
