"""The conversation API's provider calls on a WhatsApp-Web phone, end to end through the sandbox network.

Read receipts, chat presence ("typing…", "recording audio…", paused) and on-WhatsApp checks
are carried out by the wwebjs process that owns the session (a ``chat`` session command on
its driver); the network records what it received, as WhatsApp's servers would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.wwebjs import company_key, paired_stack, seed_phone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONTACT = "60190000031"
CHAT = f"{CONTACT}@c.us"


async def test_read_receipts_presence_and_number_checks_go_through_the_session(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    await seed_phone(database_url, "acme", 0)
    await seed_phone(database_url, "rival", 0)
    key, rival_key = await company_key(database_url, "acme"), await company_key(database_url, "rival")
    async with paired_stack(tmp_path, database_url, redis_url, phone="60123450031") as stack, \
            httpx.AsyncClient(base_url=stack.api.url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as http:
        ids = [(await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "text": text}))["id"]
               for text in ("hello", "are you there?")]

        async def stored() -> bool:
            rows = await stack.db.fetch("SELECT 1 FROM messages WHERE external_id = ANY($1::text[])", ids)
            return len(rows) == 2
        await eventually(stored, timeout=60, what="both inbound messages stored")

        # Read: receipts for both unread messages reach the network, then the unread count resets.
        read = await http.post(f"/api/v1/chats/{CHAT}/read")
        assert read.status_code == 200, read.text
        assert read.json() == {"chat_id": CHAT, "marked": 2, "provider_notified": True}
        receipts = (await stack.sandbox.call("GET", "/admin/reads", params={"session": "acme:0"}))["reads"]
        assert [(r["chat"], r["message_id"]) for r in receipts] == [(CHAT, ids[0]), (CHAT, ids[1])]
        chats = (await http.get("/api/v1/chats", params={"unread": "true"})).json()["data"]
        assert CHAT not in [c["chat_id"] for c in chats]
        # Nothing unread any more: no receipt is sent again.
        again = (await http.post(f"/api/v1/chats/{CHAT}/read")).json()
        assert again == {"chat_id": CHAT, "marked": 0, "provider_notified": False}
        assert (await stack.sandbox.call("GET", "/admin/reads", params={"session": "acme:0"}))["count"] == 2

        # Presence: typing, recording, paused, in that order, in this chat.
        for state in ("typing", "recording", "paused"):
            shown = await http.post(f"/api/v1/chats/{CHAT}/typing", json={"state": state})
            assert shown.status_code == 200, shown.text
            assert shown.json() == {"chat_id": CHAT, "state": state, "provider_notified": True}

        async def presence() -> list[Any] | None:
            found = (await stack.sandbox.call("GET", "/admin/presence", params={"session": "acme:0"}))["presence"]
            mine = [(p["chat"], p["state"]) for p in found if p["chat"] == CHAT]
            return mine if len(mine) >= 3 else None
        assert await eventually(presence, timeout=30) == [(CHAT, "composing"), (CHAT, "recording"),
                                                          (CHAT, "paused")]

        # On WhatsApp: the network answers (numbers ending in 404 have no account).
        check = await http.post("/api/v1/contacts/check", json={"numbers": ["+60 19-000 0031", "60123456404"]})
        assert check.status_code == 200, check.text
        assert check.json() == {"results": [
            {"input": "+60 19-000 0031", "number": CONTACT, "on_whatsapp": True},
            {"input": "60123456404", "number": "60123456404", "on_whatsapp": False}]}
        bad = await http.post("/api/v1/contacts/check", json={"numbers": ["0123"]})
        assert bad.status_code == 422 and bad.json()["errors"], bad.text

        # The other company's phone was never paired: its session cannot show anything (409, says so).
        async with httpx.AsyncClient(base_url=stack.api.url, timeout=60,
                                     headers={"Authorization": f"Bearer {rival_key}"}) as rival:
            unpaired = await rival.post(f"/api/v1/chats/{CHAT}/typing", json={"state": "typing"})
            assert unpaired.status_code == 409 and "not connected" in unpaired.json()["detail"], unpaired.text
            assert (await rival.post(f"/api/v1/chats/{CHAT}/read")).json()["marked"] == 0
