"""Graph errors through the running meta process: every class ends where it must.

One emulator and one ``bisnesgpt run meta`` for the module; each test uses its own company
and phone so their outcomes (pauses, phone errors) cannot leak into each other.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.profiles import Credentials
from bisnesgpt.messaging.queues import QueueProducer
from tests.support.meta import (
    APP_SECRET,
    EmulatorProc,
    MetaProc,
    add_meta_phone,
    drop_module_database,
    history,
    meta_env,
    module_database,
    module_redis,
    open_window,
    queue_message,
    statuses,
    text_payload,
    wait_statuses,
)
from tests.support.procs import free_port

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    db: Database
    producer: QueueProducer
    emulator: EmulatorProc
    meta: MetaProc
    next_phone: int = 600000000000001

    async def phone(self, company: str, *, token: str = "good-token", emulator_token: str | None = "good-token",
                    settings: dict[str, Any] | None = None) -> str:
        """A fresh company with one Cloud API phone known to the emulator."""
        phone_id = str(self.next_phone)
        self.next_phone += 1
        self.emulator.add_phone(phone_id, access_token=emulator_token)
        await add_meta_phone(self.db, company_id=company, phone_number_id=phone_id, token=token,
                             settings=settings)
        return phone_id

    def requests_for(self, phone_id: str) -> list[dict[str, Any]]:
        return self.emulator.requests(operation="send", phone_number_id=phone_id)


@pytest.fixture(scope="module")
async def stack(pg_server_url: str, template_database: str, redis_server_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    database_url = await module_database(pg_server_url, template_database)
    db = Database(database_url, max_size=4)
    await db.open()
    workdir: Path = tmp_path_factory.mktemp("meta-errors")
    emulator = EmulatorProc(workdir)
    with module_redis(redis_server_url) as redis_url:
        producer = QueueProducer(redis_url)
        meta = MetaProc(workdir, meta_env(database_url, redis_url, free_port(), emulator.url,
                                          META_RETRY_BASE_MS="200"))
        try:
            yield Stack(db, producer, emulator, meta)
        finally:
            meta.close()
            emulator.close()
            await producer.close()
            await db.close()
            await drop_module_database(pg_server_url, database_url)


async def one(stack: Stack, company: str, payload: dict[str, Any]) -> str:
    return await queue_message(stack.db, stack.producer, payload, company_id=company)


async def row(db: Database, message_id: str) -> Any:
    return await db.fetchrow("SELECT * FROM messages WHERE message_id = $1", message_id)


async def test_health_reports_the_meta_workers(stack: Stack) -> None:
    body = httpx.get(f"{stack.meta.url}/health").json()
    assert body["processName"] == "meta" and body["status"] == "healthy"
    assert body["checks"]["metaSendWorker"]["ok"] and body["checks"]["metaWebhookWorker"]["ok"]
    assert "bisnesgpt_meta_graph_requests_total" in httpx.get(f"{stack.meta.url}/metrics").text


async def test_outside_the_window_only_templates_go(stack: Stack) -> None:
    phone = await stack.phone("window")
    free_form = await one(stack, "window", text_payload("60180000001", "hello?"))
    await wait_statuses(stack.db, [free_form], {"failed"}, what="free-form refused")
    failed = await row(stack.db, free_form)
    assert failed["error_code"] == "TEMPLATE_REQUIRED" and "24 hours" in failed["error_title"]
    assert failed["attempts"] == 0  # refused before any send attempt
    assert stack.requests_for(phone) == []  # Meta was never called
    template = await one(stack, "window", {"messaging_product": "whatsapp", "to": "60180000001", "type": "template",
                                           "template": {"name": "hello_world", "language": {"code": "en_US"}}})
    await wait_statuses(stack.db, [template], {"sent"})
    assert [r["type"] for r in stack.requests_for(phone)] == ["template"]
    # An inbound message opens the window: free-form goes now.
    await open_window(stack.db, ["60180000001"], company_id="window")
    later = await one(stack, "window", text_payload("60180000001", "now we talk"))
    await wait_statuses(stack.db, [later], {"sent"})
    session = await stack.db.fetchrow("SELECT * FROM conversation_sessions WHERE company_id = 'window'")
    assert session["last_outbound_at"] is not None


async def test_permanent_error_fails_once_with_code_and_title(stack: Stack) -> None:
    phone = await stack.phone("perm")
    await open_window(stack.db, ["60180000002"], company_id="perm")
    stack.emulator.admin("POST", "/rules", json={"code": 131026, "to": "60180000002", "phone_number_id": phone})
    message = await one(stack, "perm", text_payload("60180000002", "undeliverable"))
    await wait_statuses(stack.db, [message], {"failed"})
    failed = await row(stack.db, message)
    assert (failed["error_code"], failed["error_title"]) == ("131026", "Message undeliverable")
    assert failed["error_details"]["code"] == 131026
    assert len(stack.requests_for(phone)) == 1
    assert await history(stack.db, message) == ["queued", "sending", "failed"]
    event = await stack.db.fetchrow("SELECT data FROM tenant_events WHERE type = 'message.status' "
                                    "AND data->>'message_id' = $1 AND data->>'status' = 'failed'", message)
    assert event["data"]["error"]["code"] == "131026"


async def test_schema_invalid_body_is_a_permanent_100(stack: Stack) -> None:
    phone = await stack.phone("invalid")
    await open_window(stack.db, ["60180000003"], company_id="invalid")
    message = await one(stack, "invalid", {"type": "interactive", "to": "60180000003",
                                           "interactive": {"type": "button", "body": {"text": "no action"}}})
    await wait_statuses(stack.db, [message], {"failed"})
    assert (await row(stack.db, message))["error_code"] == "100"
    assert len(stack.requests_for(phone)) == 1


async def test_transient_error_is_retried_then_sent(stack: Stack) -> None:
    phone = await stack.phone("flaky")
    await open_window(stack.db, ["60180000004"], company_id="flaky")
    stack.emulator.admin("POST", "/rules", json={"code": 131000, "times": 1, "phone_number_id": phone})
    message = await one(stack, "flaky", text_payload("60180000004", "second time lucky"))
    await wait_statuses(stack.db, [message], {"sent"})
    tries = stack.requests_for(phone)
    assert [t.get("error_code") for t in tries] == [131000, None]
    assert tries[1]["ts"] - tries[0]["ts"] >= 0.09  # backoff (base 200 ms, jitter 0.5-1.5)
    assert (await row(stack.db, message))["attempts"] == 2


async def test_transient_error_every_time_fails_after_three_attempts(stack: Stack) -> None:
    phone = await stack.phone("down")
    await open_window(stack.db, ["60180000005"], company_id="down")
    stack.emulator.admin("POST", "/rules", json={"code": 133004, "phone_number_id": phone})
    message = await one(stack, "down", text_payload("60180000005", "never"))
    await wait_statuses(stack.db, [message], {"failed"}, timeout=60)
    failed = await row(stack.db, message)
    assert failed["error_code"] == "133004" and failed["attempts"] == 3
    assert [t.get("error_code") for t in stack.requests_for(phone)] == [133004] * 3


async def test_bad_token_fails_and_marks_the_phone(stack: Stack) -> None:
    phone = await stack.phone("badtoken", token="stale-token", emulator_token="fresh-token")
    await open_window(stack.db, ["60180000006"], company_id="badtoken")
    message = await one(stack, "badtoken", text_payload("60180000006", "x"))
    await wait_statuses(stack.db, [message], {"failed"})
    assert (await row(stack.db, message))["error_code"] == "190"
    status = await stack.db.fetchrow("SELECT * FROM phone_status WHERE company_id = 'badtoken'")
    assert status["status"] == "error" and "190" in status["metadata"]["reason"]
    event = await stack.db.fetchrow("SELECT data FROM tenant_events WHERE company_id = 'badtoken' "
                                    "AND type = 'phone.status'")
    assert event["data"]["status"] == "error"
    assert len(stack.requests_for(phone)) == 1


async def test_restricted_account_pauses_the_phone(stack: Stack) -> None:
    phone = await stack.phone("blocked")
    await open_window(stack.db, ["60180000007", "60180000008"], company_id="blocked")
    stack.emulator.admin("POST", "/rules", json={"code": 368, "times": 1, "phone_number_id": phone})
    first = await one(stack, "blocked", text_payload("60180000007", "x"))
    await wait_statuses(stack.db, [first], {"failed"})
    assert (await row(stack.db, first))["error_code"] == "368"
    second = await one(stack, "blocked", text_payload("60180000008", "y"))
    await asyncio.sleep(2.0)
    assert (await statuses(stack.db, [second]))[second] == "queued"  # held back, not failed, not sent
    assert len(stack.requests_for(phone)) == 1
    critical = await stack.db.fetchrow("SELECT * FROM process_events WHERE event_type = 'meta.phone.paused'")
    assert critical["severity"] == "critical" and critical["event_data"]["companyId"] == "blocked"
    status = await stack.db.fetchrow("SELECT * FROM phone_status WHERE company_id = 'blocked'")
    assert status["status"] == "paused" and "paused" in status["metadata"]["reason"]
    assert datetime.fromisoformat(status["metadata"]["pausedUntil"]) > datetime.now(UTC)
    # Other phones are untouched by the pause; a phone whose sends go through is connected.
    other = await stack.phone("unblocked")
    await open_window(stack.db, ["60180000009"], company_id="unblocked")
    fine = await one(stack, "unblocked", text_payload("60180000009", "z"))
    await wait_statuses(stack.db, [fine], {"sent"})
    assert len(stack.requests_for(other)) == 1
    connected = await stack.db.fetchrow("SELECT * FROM phone_status WHERE company_id = 'unblocked'")
    assert connected["status"] == "ready" and connected["metadata"]["reason"] == "messages are being sent"


async def test_what_the_cloud_api_cannot_do_fails_without_calling_it(stack: Stack) -> None:
    phone = await stack.phone("webonly")
    await open_window(stack.db, ["60180000010"], company_id="webonly")
    edit = await one(stack, "webonly", {"type": "edit", "to": "60180000010",
                                        "edit": {"message_id": "wamid.x", "text": {"body": "fixed"}}})
    await stack.db.execute("INSERT INTO companies (id, name) VALUES ('nophone', 'x')")
    orphan = await one(stack, "nophone", text_payload("60180000011", "x"))
    await wait_statuses(stack.db, [edit, orphan], {"failed"})
    assert (await row(stack.db, edit))["error_code"] == "UNSUPPORTED_MESSAGE_TYPE"
    assert (await row(stack.db, orphan))["error_code"] == "PHONE_NOT_FOUND"
    assert stack.requests_for(phone) == []


async def test_every_message_type_of_the_payload_contract_goes_out(stack: Stack) -> None:
    phone = await stack.phone("kinds")
    to = "60180000012"
    await open_window(stack.db, [to], company_id="kinds")
    payloads = [
        {"type": "text", "text": {"body": "hi", "preview_url": True}, "context": {"message_id": "wamid.prev"}},
        {"type": "image", "image": {"link": "https://example.com/a.png", "caption": "pic"}},
        {"type": "document", "document": {"link": "https://example.com/a.pdf", "filename": "a.pdf"}},
        {"type": "audio", "audio": {"link": "https://example.com/a.ogg"}},
        {"type": "video", "video": {"link": "https://example.com/a.mp4", "caption": "vid"}},
        {"type": "sticker", "sticker": {"link": "https://example.com/a.webp"}},
        {"type": "location", "location": {"latitude": 3.139, "longitude": 101.6869, "name": "KL"}},
        {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ali", "first_name": "Ali"},
                                           "phones": [{"phone": "+60123", "type": "WORK"}]}]},
        {"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {
            "buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}},
        {"type": "reaction", "reaction": {"message_id": "wamid.prev", "emoji": "\U0001f44d"}},
        {"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}},
    ]
    ids = [await one(stack, "kinds", {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                                      **payload}) for payload in payloads]
    await wait_statuses(stack.db, ids, {"sent"}, timeout=60)
    received = {r["type"]: r for r in stack.emulator.requests(operation="send", phone_number_id=phone, body=True)}
    assert set(received) == {p["type"] for p in payloads}
    assert received["text"]["body"]["context"] == {"message_id": "wamid.prev"}
    assert all(r["http_status"] == 200 for r in received.values())


async def test_window_closed_on_metas_side_fails_by_webhook_131047(stack: Stack) -> None:
    """Our sessions say the contact wrote, Meta says not: accepted, then a failed status."""
    stack.emulator.configure_webhooks(url=f"{stack.meta.url}/webhook/meta", app_secret=APP_SECRET)
    try:
        phone = await stack.phone("stale")
        await open_window(stack.db, ["60180000013"], company_id="stale")
        stack.emulator.admin("POST", "/contacts", json={"wa_id": "60180000013", "written": False})
        message = await one(stack, "stale", text_payload("60180000013", "are you there?"))
        await wait_statuses(stack.db, [message], {"failed"}, timeout=30)
        failed = await row(stack.db, message)
        assert failed["error_code"] == "131047" and failed["error_details"][0]["title"] == "Re-engagement message"
        assert await history(stack.db, message) == ["queued", "sending", "sent", "failed"]
        assert len(stack.requests_for(phone)) == 1
    finally:
        stack.emulator.configure_webhooks(url=None)


async def test_inbound_media_is_stored_and_downloadable_in_two_hops(stack: Stack) -> None:
    stack.emulator.configure_webhooks(url=f"{stack.meta.url}/webhook/meta", app_secret=APP_SECRET)
    try:
        phone = await stack.phone("media")
        picture = b"\xff\xd8\xff\xe0 a tiny jpeg" * 10
        injected = stack.emulator.admin("POST", "/inbound", json={
            "phone_number_id": phone, "from": "60180000014", "name": "Siti", "type": "image",
            "media_base64": base64.b64encode(picture).decode(), "mime_type": "image/jpeg", "caption": "look"})
        wamid = injected["message"]["id"]
        stored = None
        for _ in range(100):
            stored = await stack.db.fetchrow("SELECT * FROM messages WHERE external_id = $1", wamid)
            if stored is not None:
                break
            await asyncio.sleep(0.1)
        assert stored is not None
        assert (stored["message_type"], stored["content"], stored["media_mime_type"]) == ("image", "look",
                                                                                          "image/jpeg")
        event = await stack.db.fetchrow("SELECT data FROM tenant_events WHERE type = 'message.inbound' "
                                        "AND company_id = 'media'")
        assert event["data"]["contact_name"] == "Siti"
        assert event["data"]["media"]["provider_media_id"] == stored["media_id"]
        assert event["data"]["media"]["id"] == stored["media_object_id"]  # our media id (GET /api/v1/media/…)
        creds = Credentials("meta", stack.emulator.url, "good-token", phone, "v23.0")
        async with CloudApiClient() as client:
            info, content = await client.download_media_by_id(creds, stored["media_id"])
        assert content == picture and info.mime_type == "image/jpeg"
        # The contact wrote: the window is open for a free-form reply.
        reply = await one(stack, "media", text_payload("60180000014", "nice picture"))
        await wait_statuses(stack.db, [reply], {"sent", "delivered", "read"})
    finally:
        stack.emulator.configure_webhooks(url=None)
