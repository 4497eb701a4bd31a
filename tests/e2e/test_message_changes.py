"""The message API after an edit or a delete went out: the current content with the edit
history, and deleted messages marked, through a real ``bisnesgpt run api``; edits and
deletes are sent by in-process workers on the real queues.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.queues import WWEBJS
from tests.support.pipeline import ApiServer, RecordingEngine, Workers, seed_tenant, sent_message
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHAT = "60123456789@c.us"


@pytest.fixture
def db(module_db: tuple[str, Database]) -> Database:
    return module_db[1]


async def status_of(db: Database, message_id: str) -> str | None:
    status = await db.fetchval("SELECT status FROM messages WHERE message_id = $1", message_id)
    return None if status is None else str(status)


async def test_edits_and_deletes_that_went_out_show_on_the_message(
        api: ApiServer, module_db: tuple[str, Database], module_redis: str) -> None:
    db = module_db[1]
    tenant = await seed_tenant(db, f"co-{uuid.uuid4().hex[:10]}", {0: "wwebjs"})
    cid = tenant.company_id
    target = await sent_message(db, cid, 0, CHAT, f"true_{CHAT}_3EB0{uuid.uuid4().hex[:8].upper()}",
                                str(uuid.uuid4()))
    untouched = await sent_message(db, cid, 0, CHAT, f"true_{CHAT}_3EB0{uuid.uuid4().hex[:8].upper()}",
                                   str(uuid.uuid4()))
    path = f"/api/v2/messages/{cid}/{CHAT}/{target.message_id}"
    async with Workers(db, module_redis, RecordingEngine(), (WWEBJS,)), \
            httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:

        async def sent(response: httpx.Response) -> str:
            assert response.status_code == 202, response.text
            message_id = str(response.json()["messageId"])
            await eventually(lambda: status_of(db, message_id), timeout=30, what="the change handled")
            await eventually(lambda: _final(db, message_id), timeout=30, what="the change sent or failed")
            return message_id

        first = await sent(await client.put(path, json={"newMessage": "Corrected price: 40"}))
        failed = await sent(await client.put(path, json={"newMessage": "FAIL this edit"}))  # never went out
        second = await sent(await client.put(path, json={"newMessage": "Corrected price: 45"}))
        edited = (await client.get(f"/api/v1/messages/{target.message_id}")).json()
        deleted_id = await sent(await client.request("DELETE", path))
        deleted = (await client.get(f"/api/v1/messages/{target.message_id}")).json()
        listed = (await client.get("/api/v1/messages", params={"chatId": CHAT, "type": "text"})).json()["data"]
    assert await status_of(db, failed) == "failed"
    assert (edited["content"], edited["originalContent"], edited["edited"], edited["deleted"]) == (
        "Corrected price: 45", "earlier", True, False)
    assert [(e["messageId"], e["content"]) for e in edited["edits"]] == [
        (first, "Corrected price: 40"), (second, "Corrected price: 45")]
    assert all(e["at"] is not None for e in edited["edits"])
    assert (deleted["deleted"], deleted["deletedForEveryone"], deleted["content"]) == (
        True, True, "Corrected price: 45")
    assert deleted["deletedAt"] is not None
    shown = {m["messageId"]: m for m in listed}
    assert (shown[target.message_id]["deleted"], shown[target.message_id]["content"]) == (True, "Corrected price: 45")
    assert (shown[untouched.message_id]["edited"], shown[untouched.message_id]["deleted"]) == (False, False)
    assert shown[untouched.message_id]["content"] == "earlier"
    assert deleted_id not in shown  # the delete itself is a message of type delete, not listed as text


async def _final(db: Database, message_id: str) -> bool:
    return await status_of(db, message_id) in ("sent", "failed")
