"""The send API through real HTTP to a real ``bisnesgpt run api``, real PostgreSQL and Redis.

One API process serves the module; every test uses its own companies. Jobs are read back
from Redis with bullmq, as the engines will see them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from bullmq import Queue

from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.capabilities import SENDABLE_TYPES
from bisnesgpt.messaging.queues import META, WWEBJS, QueueSpec
from bisnesgpt.messaging.store import touch_inbound_session
from tests.support.claims import api, emulator
from tests.support.meta import EmulatorProc
from tests.support.pipeline import (
    ADMIN_KEY,
    ApiServer,
    RecordingEngine,
    Workers,
    seed_tenant,
    sent_message,
)
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
__all__ = ["api", "emulator"]  # the module's fixtures: an api that proves phone claims

PERSON = "60123456789"
CHAT = f"{PERSON}@c.us"


@pytest.fixture
def db(module_db: tuple[str, Database]) -> Database:
    return module_db[1]


def company(prefix: str = "co") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def job_of(redis_url: str, spec: QueueSpec, message_id: str) -> Any:
    queue = Queue(spec.name, {"connection": redis_client(redis_url)})
    try:
        return await queue.getJob(message_id)
    finally:
        await queue.close()


async def row_of(db: Database, message_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM messages WHERE message_id = $1", message_id)
    assert row is not None, f"message {message_id} not stored"
    return row


CONNECTION_TYPES: dict[str | None, QueueSpec] = {
    None: WWEBJS, "wwebjs": WWEBJS, "meta_direct": META, "meta_embedded": META, "360dialog": META,
}


@pytest.mark.parametrize("connection_type", list(CONNECTION_TYPES), ids=lambda t: str(t))
async def test_every_send_type_lands_in_its_queue_with_the_contract_payload(
        api: ApiServer, db: Database, module_redis: str, connection_type: str | None) -> None:
    spec = CONNECTION_TYPES[connection_type]
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 3: connection_type})
    cid = tenant.company_id
    # Without per-chat order every message gets its job at once (ordered, only the chat's first
    # would until it is sent): this test reads each message's job.
    await db.execute("UPDATE phone_configs SET ordered_sends = false WHERE company_id = $1", cid)
    target = await sent_message(db, cid, 3, CHAT, f"wamid.{uuid.uuid4().hex}", str(uuid.uuid4()))
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PERSON}
    link = "https://example.com/f/a.bin"
    cases: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("POST", f"/api/v2/messages/text/{cid}/{CHAT}", {"message": "hi", "phoneIndex": 3, "userName": "Aisyah"},
         {**base, "type": "text", "text": {"body": "hi", "preview_url": False}}),
        ("POST", f"/api/v2/messages/text/{cid}/{PERSON}",
         {"message": "re", "phoneIndex": 3, "quotedMessageId": target.message_id},
         {**base, "type": "text", "text": {"body": "re", "preview_url": False},
          "context": {"message_id": target.external_id}}),
        ("POST", f"/api/v2/messages/image/{cid}/{CHAT}", {"imageUrl": link, "caption": "cap", "phoneIndex": 3},
         {**base, "type": "image", "image": {"link": link, "caption": "cap"}}),
        ("POST", f"/api/v2/messages/video/{cid}/{CHAT}", {"videoUrl": link, "phoneIndex": 3},
         {**base, "type": "video", "video": {"link": link}}),
        ("POST", f"/api/v2/messages/audio/{cid}/{CHAT}", {"audioUrl": link, "phoneIndex": 3},
         {**base, "type": "audio", "audio": {"link": link}}),
        ("POST", f"/api/v2/messages/document/{cid}/{CHAT}",
         {"documentUrl": link, "fileName": "a.pdf", "caption": "inv", "phoneIndex": 3},
         {**base, "type": "document", "document": {"link": link, "filename": "a.pdf", "caption": "inv"}}),
        ("POST", f"/api/v2/messages/template/{cid}/{CHAT}",
         {"templateName": "order_update", "templateLang": "en_US", "phoneIndex": 3,
          "templateComponents": [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}]},
         {**base, "type": "template", "template": {
             "name": "order_update", "language": {"code": "en_US", "policy": "deterministic"},
             "components": [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}]}}),
        # Targeted sends without phoneIndex go out on the target's phone (3).
        ("POST", f"/api/messages/react/{cid}/{target.message_id}", {"reaction": "👍"},
         {**base, "type": "reaction", "reaction": {"message_id": target.external_id, "emoji": "👍"}}),
        ("POST", f"/api/messages/react/{cid}/{target.external_id}", {"emoji": "", "phoneIndex": 3},
         {**base, "type": "reaction", "reaction": {"message_id": target.external_id, "emoji": ""}}),
        ("PUT", f"/api/v2/messages/{cid}/{CHAT}/{target.message_id}", {"newMessage": "fixed"},
         {**base, "type": "edit", "edit": {"message_id": target.external_id, "text": {"body": "fixed"}}}),
        ("DELETE", f"/api/v2/messages/{cid}/{CHAT}/{target.external_id}", {"deleteForEveryone": False},
         {**base, "type": "delete", "delete": {"message_id": target.external_id, "for_everyone": False}}),
        ("POST", "/api/v1/messages", {"to": "+60 12-345 6789", "type": "sticker", "phoneIndex": 3,
                                      "sticker": {"id": "media-77"}},
         {**base, "type": "sticker", "sticker": {"id": "media-77"}}),
        ("POST", "/api/v1/messages", {"to": PERSON, "type": "location", "phoneIndex": 3,
                                      "location": {"latitude": 3.1, "longitude": 101.7, "name": "KL"}},
         {**base, "type": "location", "location": {"latitude": 3.1, "longitude": 101.7, "name": "KL"}}),
    ]
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        for method, path, body, payload in cases:
            response = await client.request(method, path, json=body)
            if payload["type"] not in SENDABLE_TYPES[spec.process_name]:  # refused at once, nothing queued
                assert response.status_code == 422, (path, response.text)
                assert response.json()["code"] == "UNSUPPORTED_MESSAGE_TYPE", path
                continue
            assert response.status_code == 202, (path, response.text)
            answer = response.json()
            assert answer == {"success": True, "messageId": answer["messageId"], "status": "queued",
                              "process": spec.process_name, "queueName": spec.name}
            row = await row_of(db, answer["messageId"])
            assert row["payload"] == payload, path
            assert (row["status"], row["queue_name"], row["phone_index"], row["chat_id"]) == (
                "queued", spec.name, 3, CHAT)
            assert row["connection_type"] == connection_type
            job = await job_of(module_redis, spec, answer["messageId"])
            assert job is not None, f"{path}: no job {answer['messageId']} in {spec.name}"
            assert job.name == "send-message"
            assert job.data == {"messageId": answer["messageId"], "companyId": cid, "phoneIndex": 3}
            assert (job.opts["attempts"], job.opts["backoff"]) == (spec.attempts, spec.backoff)
            other = META if spec is WWEBJS else WWEBJS
            assert await job_of(module_redis, other, answer["messageId"]) is None


async def test_a_common_text_send_is_stored_as_fastapis_handler_stores_it(api: ApiServer, db: Database) -> None:
    """The common shape takes the route's express handler; a query string (``?wait=0``, which
    waits for nothing) sends the same request through FastAPI's: both answers and rows match."""
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 2: "meta_direct"})
    path = f"/api/v2/messages/text/{tenant.company_id}/{PERSON}"
    body = {"message": "same either way", "phoneIndex": 2, "userName": "Aisyah", "ordered": False}
    columns = ("status", "queue_name", "process_name", "phone_index", "chat_id", "message_type", "content",
               "payload", "raw", "chat_seq", "source", "provider", "connection_type")
    rows, answers = [], []
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        for url, key in ((path, "express-1"), (path + "?wait=0", "fastapi-1")):
            answer = await client.post(url, json=body, headers={"Idempotency-Key": key})
            assert answer.status_code == 202, answer.text
            assert answer.headers["location"] == f"/api/v1/messages/{answer.json()['messageId']}"
            answers.append({k: v for k, v in answer.json().items() if k != "messageId"})
            row = await row_of(db, answer.json()["messageId"])
            rows.append({c: row[c] for c in columns})
            stored = await db.fetchval("SELECT response_body FROM idempotency_keys WHERE company_id = $1 "
                                       "AND key = $2", tenant.company_id, key)
            assert stored == answer.json()
        assert answers[0] == answers[1] == {"success": True, "status": "queued", "process": "meta",
                                            "queueName": META.name}
        assert rows[0] == rows[1]
        # A mistake in the common shape is answered by FastAPI's handler, as before.
        refused = await client.post(path, json={"message": ""})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "message"


async def test_the_202_comes_only_after_the_row_is_committed(api: ApiServer, module_db: tuple[str, Database]) -> None:
    db = module_db[1]
    tenant = await seed_tenant(db, company(), {0: "wwebjs"})
    # A separate connection (not the API's, not the fixture pool) sees every answered message
    # the moment its 202 arrives, with its first history row and tenant event.
    observer = await asyncpg.connect(module_db[0])
    try:
        async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
            responses = await asyncio.gather(*(
                client.post(f"/api/v2/messages/text/{tenant.company_id}/{CHAT}", json={"message": f"n{i}"})
                for i in range(20)))
            for response in responses:
                assert response.status_code == 202
                message_id = response.json()["messageId"]
                row = await observer.fetchrow(
                    "SELECT m.status, (SELECT count(*) FROM message_status_history h WHERE h.message_pk = m.id) AS h,"
                    " (SELECT count(*) FROM tenant_events e WHERE e.data->>'message_id' = m.message_id) AS e"
                    " FROM messages m WHERE m.message_id = $1", message_id)
                assert row is not None and tuple(row) == ("queued", 1, 1)
    finally:
        await observer.close()


async def test_idempotent_replays_are_identical_and_conflicts_are_reported(
        api: ApiServer, db: Database, module_redis: str) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "meta_direct"})
    cid = tenant.company_id
    path = f"/api/v2/messages/text/{cid}/{CHAT}"
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        first = await client.post(path, json={"message": "once", "phoneIndex": 1},
                                  headers={"Idempotency-Key": "order-1"})
        # Same key, same body in another key order and spacing: the identical answer.
        again = await client.post(path, content='{ "phoneIndex": 1,  "message": "once" }',
                                  headers={"Idempotency-Key": "order-1", "Content-Type": "application/json"})
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        count = await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid)
        assert count == 1
        # Same key, different body (or route): 422, nothing stored.
        changed = await client.post(path, json={"message": "twice", "phoneIndex": 1},
                                    headers={"Idempotency-Key": "order-1"})
        assert changed.status_code == 422
        assert changed.headers["content-type"] == "application/problem+json"
        assert changed.json()["errors"][0]["field"] == "Idempotency-Key"
        other_route = await client.post("/api/v1/messages", json={"to": PERSON, "type": "text",
                                                                  "text": {"body": "once"}},
                                         headers={"Idempotency-Key": "order-1"})
        assert other_route.status_code == 422
        # Keys are per company: another tenant may use the same key.
        other = await seed_tenant(db, company(), {0: "wwebjs"})
        theirs = await client.post(f"/api/v2/messages/text/{other.company_id}/{CHAT}", json={"message": "once"},
                                   headers={**other.headers, "Idempotency-Key": "order-1"})
        assert theirs.status_code == 202 and theirs.json()["messageId"] != first.json()["messageId"]
        # In flight: the first request holds its answer (?wait=, no worker running) → 409.
        slow = asyncio.create_task(client.post(path + "?wait=3", json={"message": "slow"},
                                               headers={"Idempotency-Key": "order-2"}))

        async def claimed() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE company_id = $1 "
                                          "AND key = 'order-2' AND state = 'in_flight'", cid))

        await eventually(claimed, timeout=10, what="first request in flight")
        concurrent = await client.post(path + "?wait=3", json={"message": "slow"},
                                       headers={"Idempotency-Key": "order-2"})
        assert concurrent.status_code == 409, concurrent.text
        slow_answer = await slow
        assert slow_answer.status_code == 202  # still queued when the wait ran out
        replay = await client.post(path + "?wait=3", json={"message": "slow"}, headers={"Idempotency-Key": "order-2"})
        assert (replay.status_code, replay.json()) == (202, slow_answer.json())
        too_long = await client.post(path, json={"message": "x"}, headers={"Idempotency-Key": "k" * 256})
        assert too_long.status_code in (400, 422)
        assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid) == 2


async def test_idempotent_answer_survives_an_api_restart(
        tmp_path: Path, module_db: tuple[str, Database], module_redis: str) -> None:
    db = module_db[1]
    tenant = await seed_tenant(db, company(), {0: "meta_direct"})
    path = f"/api/v2/messages/text/{tenant.company_id}/{CHAT}"
    headers = {**tenant.headers, "Idempotency-Key": "restart-1"}
    server = ApiServer(tmp_path, module_db[0], module_redis, name="api-a")
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url) as client:
            first = await client.post(path, json={"message": "before restart"}, headers=headers)
    finally:
        server.stop()
    server = ApiServer(tmp_path, module_db[0], module_redis, name="api-b")
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url) as client:
            after = await client.post(path, json={"message": "before restart"}, headers=headers)
    finally:
        server.stop()
    assert first.status_code == after.status_code == 202
    assert first.json() == after.json()
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", tenant.company_id) == 1


async def test_an_api_killed_between_claiming_a_key_and_storing_leaves_no_stuck_key(
        tmp_path: Path, module_db: tuple[str, Database], module_redis: str) -> None:
    """kill -9 while the message insert is in progress: the retry creates it once (no 409 for 90 s)."""
    db = module_db[1]
    tenant = await seed_tenant(db, company(), {0: "meta_direct"})
    path = f"/api/v2/messages/text/{tenant.company_id}/{CHAT}"
    headers = {**tenant.headers, "Idempotency-Key": "crash-1"}
    # Holds the message INSERT of this company (and with it the request) until the kill.
    function = f"slow_{uuid.uuid4().hex[:8]}"
    await db.execute(f"""
        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.company_id = '{tenant.company_id}' AND NEW.content = 'hold' THEN PERFORM pg_sleep(4); END IF;
            RETURN NEW;
        END $$""")
    await db.execute(f"CREATE TRIGGER {function} BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION {function}()")
    server = ApiServer(tmp_path, module_db[0], module_redis, name="api-crash")
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            request = asyncio.create_task(client.post(path, json={"message": "hold"}, headers=headers))

            async def inserting() -> bool:
                return bool(await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%messages%'"))

            await eventually(inserting, timeout=20, what="the insert in progress")
            assert server.proc is not None
            server.proc.kill_tree()  # kill -9: no release, no rollback by the process itself
            with pytest.raises(httpx.TransportError):
                await request
    finally:
        server.stop()
        await db.execute(f"DROP TRIGGER {function} ON messages")
        await db.execute(f"DROP FUNCTION {function}()")
    # The server ends the killed connection's transaction: the claim went with it.
    await eventually(lambda: _no_backend_sleeping(db), timeout=20, what="the killed transaction rolled back")
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE company_id = $1",
                             tenant.company_id) == 0
    server = ApiServer(tmp_path, module_db[0], module_redis, name="api-after-crash")
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url) as client:
            retry = await client.post(path, json={"message": "hold"}, headers=headers)
            replay = await client.post(path, json={"message": "hold"}, headers=headers)
    finally:
        server.stop()
    assert retry.status_code == 202, retry.text
    assert (replay.status_code, replay.json()) == (202, retry.json())
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", tenant.company_id) == 1


async def _no_backend_sleeping(db: Database) -> bool:
    return not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")


async def test_a_tenant_never_reaches_another_tenants_phones_or_messages(api: ApiServer, db: Database) -> None:
    a = await seed_tenant(db, company("a"), {0: "wwebjs"})
    b = await seed_tenant(db, company("b"), {0: "wwebjs", 1: "meta_direct"})
    b_message = await sent_message(db, b.company_id, 0, CHAT, f"wamid.{uuid.uuid4().hex}", str(uuid.uuid4()))
    bid = b.company_id
    async with httpx.AsyncClient(base_url=api.url, headers=a.headers) as client:
        attempts = [
            await client.post(f"/api/v2/messages/text/{bid}/{CHAT}", json={"message": "x"}),
            await client.post("/api/v1/messages", json={"to": PERSON, "type": "text", "text": {"body": "x"},
                                                        "companyId": bid}),
            await client.get(f"/api/v1/messages/{b_message.message_id}"),
            await client.get(f"/api/v1/messages/{b_message.message_id}", params={"companyId": bid}),
            await client.get("/api/v1/messages", params={"companyId": bid}),
            await client.put(f"/api/v2/messages/{bid}/{CHAT}/{b_message.message_id}", json={"newMessage": "x"}),
            await client.post(f"/api/messages/react/{bid}/{b_message.message_id}", json={"reaction": "x"}),
            await client.get(f"/api/whatsapp/config/{bid}"),
            await client.delete(f"/api/whatsapp/config/{bid}/1"),
            await client.get(f"/api/bot-status/{bid}"),
            await client.post("/api/whatsapp/meta-direct/connect", json={
                "companyId": bid, "phoneIndex": 5, "phoneNumberId": "1", "wabaId": "2", "accessToken": "secret-123"}),
            # Naming B's message from A's own company: not found in A either.
            await client.put(f"/api/v2/messages/{a.company_id}/{CHAT}/{b_message.message_id}",
                             json={"newMessage": "x"}),
        ]
        for response in attempts:
            assert response.status_code == 404, (response.request.url, response.text)
            assert b_message.external_id not in response.text
        mine = await client.get("/api/v1/messages")
        assert mine.status_code == 200 and mine.json()["data"] == []
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", bid) == 1
    assert await db.fetchval("SELECT count(*) FROM phone_configs WHERE company_id = $1", bid) == 2


async def test_bad_requests_get_problem_details_and_store_nothing(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "official"})
    cid = tenant.company_id
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        cases: list[tuple[httpx.Response, int, str | None]] = [
            (await client.post(f"/api/v2/messages/text/{cid}/12345", json={"message": "x"}), 422, "chatId"),
            (await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x" * 4097}), 422, "message"),
            (await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x", "extra": 1}), 422,
             "extra"),
            (await client.post(f"/api/v2/messages/image/{cid}/{CHAT}",
                               json={"imageUrl": "https://e.com/a.jpg", "caption": "c" * 1025}), 422, "caption"),
            (await client.post(f"/api/v2/messages/image/{cid}/{CHAT}", json={"imageUrl": "ftp://e.com/a.jpg"}), 422,
             "imageUrl"),
            (await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", content="{not json",
                               headers={"Content-Type": "application/json"}), 422, None),
            (await client.post("/api/v1/messages", json={"to": PERSON, "type": "text", "text": {"body": "x"},
                                                         "image": {"link": "https://e.com/a"}}), 422, None),
            (await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x", "phoneIndex": 7}), 404,
             "phoneIndex"),
            (await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x", "phoneIndex": 1}), 422,
             "connection_type"),
            (await client.post(f"/api/v2/messages/text/{cid}/{CHAT}?wait=31", json={"message": "x"}), 422, "wait"),
            (await client.post(f"/api/messages/react/{cid}/{uuid.uuid4()}", json={"reaction": "x"}), 404, None),
            (await client.post(f"/api/messages/react/{cid}/wamid.unknown", json={"reaction": "x"}), 422, "chatId"),
        ]
        unauthenticated = await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x"},
                                            headers={"Authorization": "Bearer nope"})
    for response, status, field in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert {"type", "title", "status", "detail", "errors"} <= problem.keys()
        assert problem["status"] == status
        if field is not None:
            assert field in [e["field"].split(".")[-1] for e in problem["errors"]], problem
    assert "official" in cases[8][0].json()["detail"]
    assert unauthenticated.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid) == 0


async def test_a_target_not_sent_yet_is_a_conflict(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs"})
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        queued = (await client.post(f"/api/v2/messages/text/{tenant.company_id}/{CHAT}",
                                    json={"message": "x"})).json()["messageId"]
        edit = await client.put(f"/api/v2/messages/{tenant.company_id}/{CHAT}/{queued}", json={"newMessage": "y"})
    assert edit.status_code == 409
    assert "no provider id yet" in edit.json()["detail"]


async def test_wait_answers_with_the_outcome(api: ApiServer, db: Database, module_redis: str) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "360dialog"})
    engine = RecordingEngine()
    path = f"/api/v2/messages/text/{tenant.company_id}/{CHAT}"
    async with Workers(db, module_redis, engine), httpx.AsyncClient(base_url=api.url, headers=tenant.headers,
                                                                     timeout=40) as client:
        sent = await client.post(path + "?wait=20", json={"message": "hello", "phoneIndex": 1})
        failed = await client.post(path + "?wait=20", json={"message": "FAIL please"},
                                   headers={"Idempotency-Key": "wait-fail"})
        replay = await client.post(path + "?wait=20", json={"message": "FAIL please"},
                                   headers={"Idempotency-Key": "wait-fail"})
        detail = await client.get(f"/api/v1/messages/{failed.json()['messageId']}")
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert (body["success"], body["status"], body["externalId"], body["queueName"]) == (
        True, "sent", f"ext-{body['messageId']}", "meta-messages")
    assert failed.status_code == 200
    assert (failed.json()["success"], failed.json()["status"], failed.json()["error"]) == (
        False, "failed", {"code": "131026", "title": "Message undeliverable"})
    assert (replay.status_code, replay.json()) == (200, failed.json())
    view = detail.json()
    assert view["status"] == "failed" and view["error"]["code"] == "131026"
    assert [h["toStatus"] for h in view["history"]] == ["queued", "sending", "failed"]
    assert view["history"][0]["source"] == "api"
    assert view["idempotencyKey"] == "wait-fail"


async def test_messages_can_be_listed_filtered_and_paged(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "meta_direct"})
    cid = tenant.company_id
    other_chat = "60198765432@c.us"
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        ids = []
        for i in range(5):
            response = await client.post(f"/api/v2/messages/text/{cid}/{CHAT}",
                                         json={"message": f"m{i}", "phoneIndex": i % 2})
            ids.append(response.json()["messageId"])
        await client.post(f"/api/v2/messages/text/{cid}/{other_chat}", json={"message": "elsewhere"})
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"chatId": PERSON, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/v1/messages", params=params)).json()
            seen += [m["messageId"] for m in page["data"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        meta_only = (await client.get("/api/v1/messages", params={"phoneIndex": 1})).json()["data"]
        assert {m["messageId"] for m in meta_only} == {ids[1], ids[3]}
        queued = (await client.get("/api/v1/messages", params={"status": "queued", "type": "text"})).json()["data"]
        assert len(queued) == 6
        assert (await client.get("/api/v1/messages", params={"status": "sent"})).json()["data"] == []
        bad = await client.get("/api/v1/messages", params={"cursor": "garbage"})
        assert bad.status_code == 422
    async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}) as operator:
        assert (await operator.get("/api/v1/messages")).status_code == 422  # which company?
        listed = await operator.get("/api/v1/messages", params={"companyId": cid, "limit": 100})
        assert len(listed.json()["data"]) == 6
        one = await operator.get(f"/api/v1/messages/{ids[0]}")
        assert one.status_code == 200 and one.json()["companyId"] == cid


def test_every_route_is_documented_with_examples(api: ApiServer) -> None:
    spec = httpx.get(api.url + "/openapi.json").json()
    assert httpx.get(api.url + "/docs").status_code == 200
    expected = {
        ("post", "/api/v2/messages/text/{companyId}/{chatId}"), ("post", "/api/v2/messages/image/{companyId}/{chatId}"),
        ("post", "/api/v2/messages/video/{companyId}/{chatId}"),
        ("post", "/api/v2/messages/audio/{companyId}/{chatId}"),
        ("post", "/api/v2/messages/document/{companyId}/{chatId}"),
        ("post", "/api/v2/messages/template/{companyId}/{chatId}"),
        ("put", "/api/v2/messages/{companyId}/{chatId}/{messageId}"),
        ("delete", "/api/v2/messages/{companyId}/{chatId}/{messageId}"),
        ("post", "/api/messages/react/{companyId}/{messageId}"), ("post", "/api/v1/messages"),
        ("get", "/api/v1/messages"), ("get", "/api/v1/messages/{messageId}"),
        ("post", "/api/whatsapp/meta-direct/connect"), ("post", "/api/whatsapp/360dialog/onboard"),
        ("get", "/api/whatsapp/config/{companyId}"), ("delete", "/api/whatsapp/config/{companyId}/{phoneIndex}"),
        ("get", "/api/whatsapp/meta-accounts"), ("get", "/api/bot-status/{companyId}"),
    }
    for method, path in expected:
        operation = spec["paths"][path][method]
        success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
        assert "example" in success["content"]["application/json"], (method, path)
        problem = operation["responses"]["401"]["content"]["application/problem+json"]
        assert problem["example"]["status"] == 401
        if "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"].get("examples"), (method, path)
    v1 = spec["paths"]["/api/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert v1["discriminator"]["propertyName"] == "type"
    assert len(v1["oneOf"]) == 16  # the Cloud API types, edit, delete, poll, status, forward


async def test_a_disabled_engine_refuses_and_stores_nothing(
        tmp_path: Path, module_db: tuple[str, Database], module_redis: str) -> None:
    db = module_db[1]
    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "meta_direct"})
    server = ApiServer(tmp_path, module_db[0], module_redis, name="api-no-meta", ENABLE_META="false")
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers) as client:
            refused = await client.post(f"/api/v2/messages/text/{tenant.company_id}/{CHAT}",
                                        json={"message": "x", "phoneIndex": 1}, headers={"Idempotency-Key": "d-1"})
            allowed = await client.post(f"/api/v2/messages/text/{tenant.company_id}/{CHAT}",
                                        json={"message": "x", "phoneIndex": 0})
    finally:
        server.stop()
    assert refused.status_code == 503
    assert refused.json()["type"].endswith("/engine-disabled")
    assert "ENABLE_META=false" in refused.json()["detail"]
    assert allowed.status_code == 202
    rows = await db.fetch("SELECT queue_name FROM messages WHERE company_id = $1", tenant.company_id)
    assert [r["queue_name"] for r in rows] == ["wwebjs-messages"]
    # The failed attempt released its Idempotency-Key.
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE company_id = $1", tenant.company_id) == 0
    meta = Queue(META.name, {"connection": redis_client(module_redis)})
    try:
        assert await meta.getJobCounts("waiting", "delayed", "active") is not None
        jobs = await meta.getJobs(["wait", "delayed", "active"])
        assert all(job.data.get("companyId") != tenant.company_id for job in jobs)
    finally:
        await meta.close()


async def test_phone_credentials_are_stored_encrypted_and_never_shown(api: ApiServer, db: Database,
                                                                      emulator: EmulatorProc) -> None:
    from bisnesgpt.core.crypto import SecretBox
    from bisnesgpt.phones.store import D360_API_KEY, META_ACCESS_TOKEN
    from tests.support.pipeline import ENCRYPTION_KEY

    tenant = await seed_tenant(db, company(), {0: "wwebjs"})
    other = await seed_tenant(db, company(), {})
    cid = tenant.company_id
    token, d360_key = f"EAAG-secret-{uuid.uuid4().hex}", f"d360-secret-{uuid.uuid4().hex}"
    pn_id = str(uuid.uuid4().int)[:15]
    # What the providers confirm: the number in its WABA (readable with any token), the 360dialog key's number.
    emulator.add_phone(pn_id, waba_id="102290129340398")
    emulator.add_phone(str(uuid.uuid4().int)[:15], d360_api_key=d360_key)
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        connected = await client.post("/api/whatsapp/meta-direct/connect", json={
            "companyId": cid, "phoneIndex": 1, "phoneNumberId": pn_id, "wabaId": "102290129340398",
            "accessToken": token, "displayPhoneNumber": "+60 12-345 6789"})
        onboarded = await client.post("/api/whatsapp/360dialog/onboard", json={
            "companyId": cid, "phoneIndex": 2, "clientId": "cl-9", "channelId": f"ch-{uuid.uuid4().hex[:8]}",
            "apiKey": d360_key})
        listed = await client.get(f"/api/whatsapp/config/{cid}")
        taken = await client.post("/api/whatsapp/meta-direct/connect", headers=other.headers, json={
            "companyId": other.company_id, "phoneIndex": 0, "phoneNumberId": pn_id, "wabaId": "102290129340398",
            "accessToken": "another-token"})
        not_operator = await client.get("/api/whatsapp/meta-accounts")
        async with db.connection() as conn:  # the contact wrote: Meta's 24-hour window is open
            await touch_inbound_session(conn, cid, 2, CHAT.split("@", maxsplit=1)[0], datetime.now(UTC))
        routed = await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x", "phoneIndex": 2})
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as operator:
        accounts = await operator.get("/api/whatsapp/meta-accounts")
        no_company = await operator.post("/api/whatsapp/360dialog/onboard", json={
            "companyId": "no-such-company", "phoneIndex": 0, "clientId": "c", "channelId": "d"})
    assert connected.status_code == 200, connected.text
    assert connected.json() == {"success": True, "companyId": cid, "phoneIndex": 1, "connectionType": "meta_direct",
                                "processName": "meta", "queueName": "meta-messages",
                                "displayPhoneNumber": "+60 12-345 6789", "status": "pending"}
    assert onboarded.status_code == 200 and onboarded.json()["connectionType"] == "360dialog"
    rows = {r["phone_index"]: r for r in listed.json()}
    assert sorted(rows) == [0, 1, 2]
    assert (rows[1]["has_access_token"], rows[1]["meta_phone_number_id"], rows[1]["queue_name"]) == (
        True, pn_id, "meta-messages")
    assert (rows[2]["has_api_key"], rows[2]["process_name"]) == (True, "meta")
    assert taken.status_code == 409
    assert not_operator.status_code == 403
    assert no_company.status_code == 404
    assert routed.json()["queueName"] == "meta-messages"
    mine = [a for a in accounts.json() if a["company_id"] == cid]
    assert sorted(a["phone_index"] for a in mine) == [1, 2]
    for response in (connected, onboarded, listed, accounts):
        assert token not in response.text and d360_key not in response.text
    assert token not in api.output() and d360_key not in api.output()
    stored = await db.fetchrow("SELECT meta_access_token_encrypted AS t FROM phone_configs "
                               "WHERE company_id = $1 AND phone_index = 1", cid)
    assert stored is not None and token not in stored["t"] and stored["t"].startswith("v2:")
    assert SecretBox.from_hex(ENCRYPTION_KEY).decrypt(stored["t"], META_ACCESS_TOKEN.at(cid, 1)) == token
    key_row = await db.fetchrow("SELECT api_key_encrypted AS k FROM phone_configs "
                                "WHERE company_id = $1 AND phone_index = 2", cid)
    assert key_row is not None
    assert SecretBox.from_hex(ENCRYPTION_KEY).decrypt(key_row["k"], D360_API_KEY.at(cid, 2)) == d360_key
    status = await db.fetchrow("SELECT status, connection_type, process_name FROM phone_status "
                               "WHERE company_id = $1 AND phone_index = 1", cid)
    assert status is not None and tuple(status) == ("pending", "meta_direct", "meta")

    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        removed = await client.delete(f"/api/whatsapp/config/{cid}/1")
        again = await client.delete(f"/api/whatsapp/config/{cid}/1")
        after = await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "x", "phoneIndex": 1})
    assert removed.status_code == 200 and removed.json() == {"success": True, "companyId": cid, "phoneIndex": 1}
    assert again.status_code == 404
    assert after.status_code == 404


async def test_bot_status_shows_each_phone_with_its_qr_code(api: ApiServer, db: Database) -> None:
    import base64

    from bisnesgpt.phones.store import set_phone_status

    tenant = await seed_tenant(db, company(), {0: "wwebjs", 1: "meta_direct"})
    cid = tenant.company_id
    async with db.transaction() as conn:
        await set_phone_status(conn, cid, 0, "qr", metadata={"qrCode": "2@K1o0QWxhZGRpbjpvcGVuIHNlc2FtZQ==,abc"},
                               connection_type="wwebjs", process_name="wwebjs")
        await set_phone_status(conn, cid, 2, "pairing_code", metadata={"pairingCode": "ABCD-EFGH"},
                               phone_number="60111222333")
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        response = await client.get(f"/api/bot-status/{cid}")
        empty_company = await seed_tenant(db, company(), {})
        empty = await client.get(f"/api/bot-status/{empty_company.company_id}",
                                 headers=empty_company.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    phones = {p["phoneIndex"]: p for p in body["phones"]}
    assert body["phoneCount"] == 3
    assert (body["status"], body["connectionType"]) == ("qr", "wwebjs")
    qr = phones[0]["qrCode"]
    assert qr == body["qrCode"] and qr.startswith("data:image/png;base64,")
    assert base64.b64decode(qr.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert (phones[1]["status"], phones[1]["connectionType"], phones[1]["qrCode"]) == ("pending", "meta_direct", None)
    assert (phones[2]["status"], phones[2]["pairingCode"], phones[2]["configured"], phones[2]["phoneInfo"]) == (
        "pairing_code", "ABCD-EFGH", False, "60111222333")
    assert empty.status_code == 200 and empty.json()["status"] == "not_configured"


async def test_meta_free_form_outside_the_24_hour_window_is_refused_at_once(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, company(), {0: "meta_direct"})
    cid = tenant.company_id
    stranger = "60177777777"
    async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers) as client:
        refused = await client.post(f"/api/v2/messages/text/{cid}/{stranger}", json={"message": "hello"})
        template = await client.post("/api/v1/messages", json={
            "to": stranger, "type": "template", "phoneIndex": 0,
            "template": {"name": "hello_world", "language": {"code": "en_US"}}})
        async with db.connection() as conn:
            await touch_inbound_session(conn, cid, 0, stranger, datetime.now(UTC))
        after_inbound = await client.post(f"/api/v2/messages/text/{cid}/{stranger}", json={"message": "hello"})
    assert refused.status_code == 422
    assert refused.json()["type"].endswith("/template-required")
    assert refused.json()["code"] == "TEMPLATE_REQUIRED"
    assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1 AND message_type = 'text'",
                             cid) == 1  # only the one sent after the contact wrote
    assert template.status_code == 202, template.text
    assert after_inbound.status_code == 202, after_inbound.text
