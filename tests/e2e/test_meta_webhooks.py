"""Webhooks through a running ``bisnesgpt run meta`` (spawned, real HTTP, real PostgreSQL/Redis).

Every webhook example of Meta's OpenAPI description is POSTed with a valid signature and
must be stored as what it is; the same bytes with a wrong or missing signature are
rejected and leave no trace (no row, no queued job).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.signature import sign
from bisnesgpt.messaging.states import advance_status
from bisnesgpt.sandbox.meta_emulator.spec import load_spec, webhook_examples
from tests.support.meta import (
    APP_SECRET,
    D360_TOKEN,
    VERIFY_TOKEN,
    MetaProc,
    add_d360_phone,
    add_meta_phone,
    drop_module_database,
    insert_message,
    meta_env,
    module_database,
    module_redis,
    text_payload,
)
from tests.support.polling import wait_until
from tests.support.procs import Proc, free_port, http_ok

pytestmark = pytest.mark.e2e

EXAMPLES = webhook_examples(load_spec())
PHONE_ID = "106540352242922"  # the phone number id every example names
SENDER = "16505551234"


class Stack:
    def __init__(self, db: Database, meta: MetaProc, database_url: str) -> None:
        self.db = db
        self.meta = meta
        self.database_url = database_url
        self.http = httpx.Client(base_url=meta.url, timeout=10)
        self.ack_ms: list[float] = []
        self.env: dict[str, str] = {}

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        started = time.perf_counter()
        response = self.http.post(path, content=body, headers={"Content-Type": "application/json", **(headers or {})})
        if response.status_code == 200:
            self.ack_ms.append((time.perf_counter() - started) * 1000)
        return response

    def signed(self, path: str, body: bytes) -> httpx.Response:
        return self.post(path, body, {"X-Hub-Signature-256": sign(APP_SECRET, body)})

    def metric(self, name: str, **labels: str) -> float:
        text = self.http.get("/metrics").text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        assert wanted is not None
        return 0.0

    async def counts(self) -> dict[str, int]:
        row = await self.db.fetchrow("""
            SELECT (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM tenant_events) AS events,
                   (SELECT count(*) FROM meta_webhook_changes) AS changes,
                   (SELECT count(*) FROM conversation_sessions) AS sessions""")
        assert row is not None
        return dict(row)


@pytest.fixture(scope="module")
async def stack(pg_server_url: str, template_database: str, redis_server_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    database_url = await module_database(pg_server_url, template_database)
    db = Database(database_url, max_size=4)
    await db.open()
    await add_meta_phone(db, phone_number_id=PHONE_ID, waba_id="419561257915477")
    await add_d360_phone(db, company_id="d360co", channel_id="chan-77", display="+60 12-345 6789")
    workdir: Path = tmp_path_factory.mktemp("meta-webhooks")
    with module_redis(redis_server_url) as redis_url:
        env = meta_env(database_url, redis_url, free_port(), "http://127.0.0.1:9", META_STATUS_RETRY_SECONDS="4")
        meta = MetaProc(workdir, env)
        the_stack = Stack(db, meta, database_url)
        the_stack.env = env
        try:
            yield the_stack
        finally:
            the_stack.http.close()
            meta.close()
            await db.close()
            await drop_module_database(pg_server_url, database_url)


async def reset(db: Database) -> None:
    """Examples reuse one wamid for different messages; each is checked on a clean slate."""
    await db.execute("TRUNCATE messages, tenant_events, meta_webhook_changes, conversation_sessions CASCADE")


async def wait_for(db: Database, query: str, *args: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await db.fetchrow(query, *args)
        if row is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing for {query} {args}")


# (type, content, context id) each example must be stored with; media and specifics checked below.
EXPECTED_INBOUND: dict[str, tuple[str, str | None, str | None]] = {
    "Text Message": ("text", "Does it come in another color?", None),
    "Text Message with Context (Product Inquiry)": ("text", "Is this still available?",
                                                    "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGA9wcm9kdWN0X2lucXVpcnkA"),
    "Text Message from Click to WhatsApp Ad": ("text", "Hello! Can I get more info on this?", None),
    "Reaction Message": ("reaction", "\U0001f44d", "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA"),
    "Image Message": ("image", "Taj Mahal", None),
    "Location Message": ("location", "Philz Coffee", None),
    "Contact Sharing Message": ("contacts", "Lucía Gómez", None),
    "Unsupported Message": ("unsupported", None, None),
    "Button Message": ("button", "Unsubscribe", "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJFNjk2OTMwNEZCQjhGMzUyQUYA"),
    "Interactive List Reply Message": ("interactive", "Priority Mail Express",
                                       "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJGMzEyNzhENTZDMzNGODlDRDgA"),
    "Interactive Button Reply Message": ("interactive", "Cancel",
                                         "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MEM2RUJFNkI0RENGQTVDRjUA"),
    "Order Message": ("order", None, None),
    "System Message": ("system", "User Sheena Nelson changed from 16505551234 to 12195555358", None),
}
EXPECTED_CHANGES = {"Group Create Message": "group_lifecycle_update",
                    "Group Settings Update": "group_settings_update",
                    "Group Remove Participants": "group_participants_update"}


def test_every_example_has_an_expectation() -> None:
    assert set(EXAMPLES) == set(EXPECTED_INBOUND) | set(EXPECTED_CHANGES)


async def test_subscription_verification(stack: Stack) -> None:
    for path in ("/api/meta/webhook", "/webhook/meta"):
        ok = stack.http.get(path, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                          "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert ok.headers["content-type"].startswith("text/plain")
        for params in ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                       {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, {}):
            assert stack.http.get(path, params=params).status_code == 403


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_unsigned_or_missigned_example_leaves_no_trace(stack: Stack, name: str) -> None:
    await reset(stack.db)
    body = json.dumps(EXAMPLES[name]).encode()
    rejected_before = stack.metric("bisnesgpt_meta_webhooks_received_total", provider="meta", result="unauthorized")
    accepted_before = stack.metric("bisnesgpt_meta_webhooks_received_total", provider="meta", result="accepted")
    attempts = [
        stack.post("/webhook/meta", body),
        stack.post("/api/meta/webhook", body, {"X-Hub-Signature-256": sign("not-the-secret", body)}),
        stack.post("/webhook/meta", body, {"X-Hub-Signature-256": sign(APP_SECRET, body + b" ")}),
        stack.post("/webhook/meta", body, {"X-Hub-Signature-256": sign(APP_SECRET, body)[7:]}),
    ]
    for response in attempts:
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    await asyncio.sleep(0.5)  # were anything enqueued, the worker would have stored it by now
    assert await stack.counts() == {"messages": 0, "events": 0, "changes": 0, "sessions": 0}
    assert stack.metric("bisnesgpt_meta_webhooks_received_total", provider="meta",
                        result="unauthorized") == rejected_before + 4
    assert stack.metric("bisnesgpt_meta_webhooks_received_total", provider="meta",
                        result="accepted") == accepted_before


@pytest.mark.parametrize("name", sorted(EXPECTED_INBOUND))
async def test_signed_inbound_example_is_stored(stack: Stack, name: str) -> None:
    await reset(stack.db)
    example = EXAMPLES[name]
    message = example["entry"][0]["changes"][0]["value"]["messages"][0]
    body = json.dumps(example).encode()
    response = stack.signed("/webhook/meta" if len(name) % 2 else "/api/meta/webhook", body)
    assert response.status_code == 200
    row = await wait_for(stack.db, "SELECT * FROM messages WHERE external_id = $1 AND direction = 'inbound'",
                         message["id"])
    kind, content, context = EXPECTED_INBOUND[name]
    assert (row["company_id"], row["phone_index"], row["provider"]) == ("acme", 0, "meta")
    assert (row["message_type"], row["content"], row["context_message_id"]) == (kind, content, context)
    assert row["chat_id"] == f"{SENDER}@c.us" and row["status"] == "delivered"
    assert row["payload"] == message  # the provider's message, every field kept
    assert row["raw"]["message"] == message and row["raw"]["waba_id"] == example["entry"][0]["id"]
    if name == "Image Message":
        assert (row["media_id"], row["media_mime_type"]) == ("1003383421387256", "image/jpeg")
        assert row["payload"]["image"]["sha256"] == "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    if name == "Unsupported Message":
        assert row["payload"]["errors"][0]["code"] == 131051
    if name == "Text Message from Click to WhatsApp Ad":
        assert row["payload"]["referral"]["source_id"] == "120226305854810726"
    if name == "Order Message":
        assert len(row["payload"]["order"]["product_items"]) == 2
    event = await wait_for(stack.db, "SELECT * FROM tenant_events WHERE type = 'message.inbound'")
    assert event["data"]["external_id"] == message["id"] and event["data"]["type"] == kind
    assert event["raw"] == message
    session = await wait_for(stack.db, "SELECT * FROM conversation_sessions WHERE contact = $1", SENDER)
    assert int(session["last_inbound_at"].timestamp()) == int(message["timestamp"])
    # Meta redelivers: the same bytes again change nothing.
    assert stack.signed("/webhook/meta", body).status_code == 200
    await asyncio.sleep(0.5)
    assert (await stack.counts())["messages"] == 1
    assert (await stack.counts())["events"] == 1


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
async def test_signed_other_example_is_kept(stack: Stack, name: str) -> None:
    await reset(stack.db)
    example = EXAMPLES[name]
    assert stack.signed("/webhook/meta", json.dumps(example).encode()).status_code == 200
    row = await wait_for(stack.db, "SELECT * FROM meta_webhook_changes WHERE field = $1", EXPECTED_CHANGES[name])
    assert (row["company_id"], row["phone_number_id"], row["waba_id"]) == ("acme", PHONE_ID, "102290129340398")
    assert row["value"] == example["entry"][0]["changes"][0]["value"]
    assert (await stack.counts())["messages"] == 0


async def test_unknown_fields_are_kept_not_fatal(stack: Stack) -> None:
    await reset(stack.db)
    example = json.loads(json.dumps(EXAMPLES["Text Message"]))
    value = example["entry"][0]["changes"][0]["value"]
    value["messages"][0]["id"] = "wamid.with-extras"
    value["messages"][0]["brand_new_field"] = {"x": 1}
    value["something_meta_adds_later"] = [1, 2, 3]
    example["entry"][0]["changes"].append({"field": "message_template_status_update", "value": {
        "event": "APPROVED", "message_template_id": 123, "message_template_name": "promo"}})
    example["entry"][0]["changes"].append({"field": "messages", "value": {"garbled": True}})
    assert stack.signed("/webhook/meta", json.dumps(example).encode()).status_code == 200
    stored = await wait_for(stack.db, "SELECT payload FROM messages WHERE external_id = 'wamid.with-extras'")
    assert stored["payload"]["brand_new_field"] == {"x": 1}
    template = await wait_for(stack.db, "SELECT * FROM meta_webhook_changes "
                                        "WHERE field = 'message_template_status_update'")
    assert template["value"]["event"] == "APPROVED" and template["company_id"] == "acme"  # the WABA's owner
    extra = await wait_for(stack.db, "SELECT * FROM meta_webhook_changes WHERE field = 'messages.extra'")
    assert extra["value"] == {"something_meta_adds_later": [1, 2, 3]} and extra["company_id"] == "acme"
    await wait_for(stack.db, "SELECT 1 FROM meta_webhook_changes WHERE value = '{\"garbled\": true}'::jsonb")


async def test_partner_removed_disconnects_the_phone(stack: Stack) -> None:
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "419561257915477", "time": 1750000000,
               "changes": [{"field": "account_update", "value": {
                   "phone_number": "15550783881", "event": "PARTNER_REMOVED",
                   "waba_info": {"waba_id": "419561257915477", "owner_business_id": "1"}}}]}]}
    assert stack.signed("/webhook/meta", json.dumps(payload).encode()).status_code == 200
    status = await wait_for(stack.db,
                            "SELECT * FROM phone_status WHERE company_id = 'acme' AND status = 'disconnected'")
    assert status["metadata"]["reason"] == "PARTNER_REMOVED"
    event = await wait_for(stack.db, "SELECT * FROM tenant_events WHERE type = 'phone.status' AND company_id = 'acme'")
    assert event["data"]["status"] == "disconnected"
    await wait_for(stack.db, "SELECT 1 FROM meta_webhook_changes WHERE field = 'account_update'")


async def test_oversized_and_malformed_bodies_are_refused(stack: Stack) -> None:
    await reset(stack.db)
    big = json.dumps({"object": "whatsapp_business_account", "entry": [], "pad": "x" * (3 * 1024 * 1024)}).encode()
    response = stack.signed("/webhook/meta", big)
    assert response.status_code == 413 and response.json()["status"] == 413
    just_under = json.dumps({"object": "whatsapp_business_account", "entry": [],
                             "pad": "x" * (3 * 1024 * 1024 - 100)}).encode()
    assert len(just_under) <= 3 * 1024 * 1024
    assert stack.signed("/webhook/meta", just_under).status_code == 200
    assert stack.signed("/webhook/meta", b"not json").status_code == 400
    assert stack.signed("/webhook/meta", b"[1, 2]").status_code == 400
    await asyncio.sleep(0.5)
    assert (await stack.counts())["messages"] == 0


async def test_360dialog_webhook_needs_its_token(stack: Stack) -> None:
    await reset(stack.db)
    example = json.loads(json.dumps(EXAMPLES["Text Message"]))
    value = example["entry"][0]["changes"][0]["value"]
    value["metadata"] = {"display_phone_number": "60123456789", "phone_number_id": "999000111"}
    value["messages"][0]["id"] = "wamid.d360-inbound-1"
    body = json.dumps(example).encode()
    assert stack.post("/webhook/360dialog", body).status_code == 401
    assert stack.post("/webhook/360dialog", body, {"X-Webhook-Token": "wrong"}).status_code == 401
    assert stack.post("/webhook/360dialog", body, {"X-Webhook-Token": D360_TOKEN}).status_code == 200
    row = await wait_for(stack.db, "SELECT * FROM messages WHERE external_id = 'wamid.d360-inbound-1'")
    assert (row["company_id"], row["provider"], row["connection_type"]) == ("d360co", "360dialog", "360dialog")
    value["messages"][0]["id"] = "wamid.d360-inbound-2"
    routed = stack.post("/webhook/360dialog?channel=chan-77", json.dumps(example).encode(),
                        {"X-Webhook-Token": D360_TOKEN})
    assert routed.status_code == 200
    await wait_for(stack.db, "SELECT 1 FROM messages WHERE external_id = 'wamid.d360-inbound-2' "
                             "AND company_id = 'd360co'")


def status_payload(wamid: str, status: str, recipient: str = SENDER, *, at: int | None = None, **extra: Any) -> bytes:
    entry = {"id": wamid, "status": status, "timestamp": str(at or int(time.time())), "recipient_id": recipient,
             **extra}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "419561257915477", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
            "display_phone_number": "15550783881", "phone_number_id": PHONE_ID}, "statuses": [entry]}}]}]}).encode()


async def outbound(db: Database, status: str, wamid: str | None = None) -> int:
    """An outbound message moved to ``status`` (with ``wamid`` once sent), as the send path leaves it."""
    message_id = await insert_message(db, text_payload(SENDER, "status test"))
    pk = await db.fetchval("SELECT id FROM messages WHERE message_id = $1", message_id)
    async with db.transaction() as conn:
        for step in ("sending", "sent")[: ("sending", "sent").index(status) + 1]:
            await advance_status(conn, pk, step, source="test", external_id=wamid if step == "sent" else None)
    return int(pk)


async def history_of(db: Database, pk: int) -> list[tuple[str, bool, Any]]:
    return [(r["to_status"], r["applied"], r["provider_at"]) for r in await db.fetch(
        "SELECT to_status, applied, provider_at FROM message_status_history WHERE message_pk = $1 ORDER BY id", pk)]


async def test_statuses_move_forward_only_and_every_one_is_kept(stack: Stack) -> None:
    await reset(stack.db)
    pk = await outbound(stack.db, "sent", "wamid.forward-only")
    base = int(time.time()) - 600
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    conversation = {"id": "CONVERSATION_ID", "expiration_timestamp": str(base + 86400),
                    "origin": {"type": "utility"}}
    # read first, then the delivered and the sent Meta sent earlier (webhooks come in any order)
    # and a redelivered read: one at a time, so the history's order is theirs.
    received = [("read", base + 30, {}), ("delivered", base + 20, {}),
                ("sent", base + 10, {"pricing": pricing, "conversation": conversation}), ("read", base + 30, {})]
    for n, (status, at, extra) in enumerate(received, start=1):
        body = status_payload("wamid.forward-only", status, at=at, **extra)
        assert stack.signed("/webhook/meta", body).status_code == 200
        await wait_for(stack.db, "SELECT 1 WHERE (SELECT count(*) FROM message_status_history "
                                 "WHERE message_pk = $1) >= $2", pk, 3 + n)
    row = await stack.db.fetchrow("SELECT * FROM messages WHERE id = $1", pk)
    assert row is not None and row["status"] == "read"

    def meta_time(at: int) -> datetime:
        return datetime.fromtimestamp(at, UTC)

    # Each status fills its own column with Meta's time, also the ones that came late.
    assert (row["sent_at"], row["delivered_at"], row["read_at"]) == (
        meta_time(base + 10), meta_time(base + 20), meta_time(base + 30))
    assert (row["pricing"], row["conversation"]) == (pricing, conversation)
    assert (await history_of(stack.db, pk))[3:] == [
        ("read", True, meta_time(base + 30)), ("delivered", False, meta_time(base + 20)),
        ("sent", False, meta_time(base + 10)), ("read", False, meta_time(base + 30))]
    events = await stack.db.fetch("SELECT data FROM tenant_events WHERE type = 'message.status' "
                                  "AND data->>'external_id' = 'wamid.forward-only' ORDER BY created_at")
    assert [e["data"]["status"] for e in events] == ["sent", "read"]  # tenants hear of state changes


async def test_failed_status_keeps_its_errors(stack: Stack) -> None:
    await reset(stack.db)
    pk = await outbound(stack.db, "sent", "wamid.will-fail")
    errors = [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
               "error_data": {"details": "Message failed to send because more than 24 hours have passed."}}]
    assert stack.signed("/webhook/meta", status_payload("wamid.will-fail", "failed", errors=errors)).status_code == 200
    row = await wait_for(stack.db, "SELECT * FROM messages WHERE id = $1 AND status = 'failed'", pk)
    assert (row["error_code"], row["error_title"], row["error_details"]) == ("131047", "Re-engagement message",
                                                                             errors)
    assert stack.signed("/webhook/meta", status_payload("wamid.will-fail", "read")).status_code == 200
    await asyncio.sleep(1.0)
    assert await stack.db.fetchval("SELECT status FROM messages WHERE id = $1", pk) == "failed"


async def test_status_that_beats_the_send_record_is_applied_once_recorded(stack: Stack) -> None:
    await reset(stack.db)
    pk = await outbound(stack.db, "sending")
    assert stack.signed("/webhook/meta", status_payload("wamid.early-bird", "delivered")).status_code == 200
    await asyncio.sleep(1.5)  # the status arrived first and is waiting for its message
    assert await stack.db.fetchval("SELECT status FROM messages WHERE id = $1", pk) == "sending"
    async with stack.db.transaction() as conn:
        await advance_status(conn, pk, "sent", source="test", external_id="wamid.early-bird")
    await wait_for(stack.db, "SELECT 1 FROM messages WHERE id = $1 AND status = 'delivered'", pk)


async def test_status_never_matched_is_reported_not_dropped(stack: Stack) -> None:
    await reset(stack.db)
    assert stack.signed("/webhook/meta", status_payload("wamid.nobody-sent-me", "sent")).status_code == 200
    event = await wait_for(stack.db, "SELECT * FROM process_events WHERE event_type = 'meta.status.unmatched' "
                                     "AND event_data->>'wamid' = 'wamid.nobody-sent-me'", timeout=30)
    assert event["severity"] == "warning" and event["event_data"]["waitedSeconds"] >= 4


async def test_legacy_serves_the_same_webhook_routes(stack: Stack, tmp_path: Path) -> None:
    await reset(stack.db)
    port = free_port()
    env = {**stack.env, "PORT": str(port), "API_PORT": str(free_port()), "ENABLE_WWEBJS": "false"}
    legacy = Proc(["run", "legacy"], cwd=tmp_path, env=env, log_name="legacy")
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=60, what="legacy /health")
        verified = httpx.get(f"http://127.0.0.1:{port}/webhook/meta", params={
            "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"})
        assert (verified.status_code, verified.text) == (200, "42")
        example = json.loads(json.dumps(EXAMPLES["Text Message"]))
        example["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid.via-legacy"
        body = json.dumps(example).encode()
        unsigned = httpx.post(f"http://127.0.0.1:{port}/api/meta/webhook", content=body)
        assert unsigned.status_code == 401
        signed = httpx.post(f"http://127.0.0.1:{port}/api/meta/webhook", content=body,
                            headers={"X-Hub-Signature-256": sign(APP_SECRET, body)})
        assert signed.status_code == 200
        await wait_for(stack.db, "SELECT 1 FROM messages WHERE external_id = 'wamid.via-legacy'")
    finally:
        legacy.kill_tree()


async def test_webhook_ack_latency_is_reported(stack: Stack) -> None:
    """Not a speed assertion (CPU noise): it reports what the other tests observed."""
    assert stack.ack_ms, "no accepted webhook was timed"
    ordered = sorted(stack.ack_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"\nwebhook ack over {len(ordered)} POSTs: median {ordered[len(ordered) // 2]:.1f} ms, p99 {p99:.1f} ms")
