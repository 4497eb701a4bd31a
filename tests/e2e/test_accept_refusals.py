"""Refused at accept what can never be sent, and replays that tell the message's state now,
through real HTTP to a real ``bisnesgpt run api`` with real PostgreSQL and Redis.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.states import advance_status
from tests.support.pipeline import ApiServer, seed_tenant, sent_message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PERSON = "60123456789"
CHAT = f"{PERSON}@c.us"


@pytest.fixture
def db(module_db: tuple[str, Database]) -> Database:
    return module_db[1]


def company() -> str:
    return f"co-{uuid.uuid4().hex[:10]}"


def assert_unsupported(response: httpx.Response, message_type: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/unsupported-message-type")
    assert (body["code"], body["messageType"]) == ("UNSUPPORTED_MESSAGE_TYPE", message_type)
    assert body["errors"][0]["field"] == "type"
    assert "phoneIndex" in body["detail"]  # says what to do: another phone


async def test_edits_and_deletes_on_a_cloud_api_phone_are_refused_at_once(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "meta_direct"})
    cid = tenant.company_id
    target = await sent_message(db, cid, 1, CHAT, "wamid.sent-1", str(uuid.uuid4()))
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        edit = await client.put(f"/api/v2/messages/{cid}/{CHAT}/{target.message_id}",
                                json={"newMessage": "fixed", "phoneIndex": 1})
        delete = await client.request("DELETE", f"/api/v2/messages/{cid}/{CHAT}/{target.message_id}")
        v1_edit = await client.post("/api/v1/messages", json={
            "to": PERSON, "type": "edit", "phoneIndex": 1,
            "edit": {"message_id": "wamid.sent-1", "text": {"body": "fixed"}}})
    assert_unsupported(edit, "edit")
    assert_unsupported(delete, "delete")  # on the phone of its target (phone 1), none named
    assert_unsupported(v1_edit, "edit")
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid) == 1  # the target only


async def test_templates_on_a_whatsapp_web_phone_are_refused_at_once(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "meta_direct"})
    cid = tenant.company_id
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        v2 = await client.post(f"/api/v2/messages/template/{cid}/{PERSON}",
                               json={"templateName": "hello_world", "templateLang": "en_US", "phoneIndex": 0})
        v1 = await client.post("/api/v1/messages", json={
            "to": PERSON, "type": "template", "phoneIndex": 0,
            "template": {"name": "hello_world", "language": {"code": "en_US"}}})
        on_meta = await client.post(f"/api/v2/messages/template/{cid}/{PERSON}",
                                    json={"templateName": "hello_world", "templateLang": "en_US", "phoneIndex": 1})
    assert_unsupported(v2, "template")
    assert_unsupported(v1, "template")
    assert on_meta.status_code == 202, on_meta.text
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid) == 1


async def test_an_idempotent_replay_answers_the_status_the_message_has_now(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs"})
    cid = tenant.company_id
    path = f"/api/v2/messages/text/{cid}/{CHAT}"
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        first = await client.post(path, json={"message": "once"}, headers={"Idempotency-Key": "order-9"})
        assert first.status_code == 202 and first.json()["status"] == "queued"
        message_id = first.json()["messageId"]
        pk = await db.fetchval("SELECT id FROM messages WHERE message_id = $1", message_id)
        async with db.transaction() as conn:  # what the engine and the provider's receipts do
            await advance_status(conn, pk, "sent", source="test", external_id="true_60123456789@c.us_3EB0")
            await advance_status(conn, pk, "read", source="test")
        again = await client.post(path, json={"message": "once"}, headers={"Idempotency-Key": "order-9"})
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**first.json(), "status": "read", "externalId": "true_60123456789@c.us_3EB0"}
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid) == 1
