"""Number ↔ LID on a WhatsApp-Web phone, end to end through the sandbox network.

A contact the network addresses by its LID writes three times: first without its number
(WhatsApp does not reveal it), then with it, then without it again. The gateway keeps the
pair once revealed (``contact_lids``), so the third message — and every event, the message
API and the live stream — carries both the number and the LID; the chat is filed under the
number from then on, and the chat and contact lists name both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from bisnesgpt.sandbox.wweb.protocol import lid_of
from tests.support.polling import eventually
from tests.support.wwebjs import company_key, paired_stack, seed_phone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONTACT = "60190000041"
LID = lid_of(CONTACT)


async def test_lid_senders_carry_number_and_lid_once_revealed(tmp_path: Path, database_url: str,
                                                               redis_url: str) -> None:
    await seed_phone(database_url, "acme", 0)
    key = await company_key(database_url, "acme")
    async with paired_stack(tmp_path, database_url, redis_url, phone="60123450041") as stack, \
            httpx.AsyncClient(base_url=stack.api.url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as http:

        async def inbound_event(external_id: str) -> dict[str, Any]:
            async def check() -> dict[str, Any] | None:
                row = await stack.db.fetchrow("SELECT id, data FROM tenant_events WHERE type = 'message.inbound' "
                                              "AND data->>'external_id' = $1", external_id)
                return row
            found: dict[str, Any] = await eventually(check, timeout=60, what=f"event of {external_id}")
            return found

        hidden = await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "text": "who am I?", "lid": True,
                                                           "revealNumber": False})
        first = await inbound_event(hidden["id"])
        data = first["data"]
        assert (data["from"], data["from_number"], data["from_lid"], data["chat_id"]) == (LID, None, LID, LID)
        assert data["payload"]["from"] == LID and data["payload"]["from_lid"] == LID

        # The live stream, resumed from the first event: the same documents, with both identities.
        ws_url = f"{stack.api.url.replace('http', 'ws')}/api/v1/events/ws?types=message.inbound&since={first['id']}"
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            revealed = await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "text": "it's me", "lid": True})
            later = await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "text": "again", "lid": True,
                                                              "revealNumber": False})
            streamed = {}
            while len(streamed) < 2:
                event = json.loads(await ws.recv())
                streamed[event["data"]["external_id"]] = event["data"]
        for external_id in (revealed["id"], later["id"]):
            data = streamed[external_id]
            assert (data["from"], data["from_number"], data["from_lid"]) == (CONTACT, CONTACT, LID), data
            assert data["chat_id"] == f"{CONTACT}@c.us"
            assert (await inbound_event(external_id))["data"] == data  # the webhook's document, too

        # The message API: the stored payload names both.
        row = await stack.db.fetchrow("SELECT message_id FROM messages WHERE external_id = $1", later["id"])
        assert row is not None
        view = (await http.get(f"/api/v1/messages/{row['message_id']}")).json()
        assert (view["payload"]["from"], view["payload"]["from_lid"], view["chatId"]) == (CONTACT, LID,
                                                                                          f"{CONTACT}@c.us")
        # Chats and contacts: the number's chat knows its LID; the LID's early chat knows its number.
        chats = {c["chat_id"]: c for c in (await http.get("/api/v1/chats")).json()["data"]}
        assert (chats[f"{CONTACT}@c.us"]["number"], chats[f"{CONTACT}@c.us"]["lid"]) == (CONTACT, LID)
        assert (chats[LID]["number"], chats[LID]["lid"]) == (CONTACT, LID)
        contacts = {c["chat_id"]: c for c in (await http.get("/api/v1/contacts")).json()["data"]}
        assert (contacts[f"{CONTACT}@c.us"]["number"], contacts[f"{CONTACT}@c.us"]["lid"]) == (CONTACT, LID)
        mapping = await stack.db.fetch("SELECT lid, number FROM contact_lids WHERE company_id = 'acme'")
        assert [(m["lid"], m["number"]) for m in mapping] == [(LID, CONTACT)]
