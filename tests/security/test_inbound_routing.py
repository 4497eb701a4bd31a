"""Inbound routing never guesses: a webhook is stored under a company only if it names exactly one phone.

Before, a 360dialog webhook without ``?channel=`` was matched by display number with
``ORDER BY company_id LIMIT 1``: two companies with the same display number, and the
alphabetically first one received the other's messages. Now such a webhook — and one whose
identities name different phones, or none — is kept aside (``meta_webhook_changes``,
``routing`` ambiguous / unmatched, with the candidate phones), a warning event says so, and
``bisnesgpt inbound unrouted`` lists it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.webhook_processor import WEBHOOK_KIND, WebhookProcessor
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.messaging.queues import QueueProducer
from tests.support.meta import ENCRYPTION_KEY, add_d360_phone, add_meta_phone
from tests.support.procs import clean_env

pytestmark = pytest.mark.security


@pytest.fixture
async def processor(db: Database, redis_url: str) -> AsyncIterator[WebhookProcessor]:
    producer = QueueProducer(redis_url)
    try:
        yield WebhookProcessor(db, producer, EventRecorder(db, "meta"),
                               Settings(encryption_key=SecretStr(ENCRYPTION_KEY)))
    finally:
        await producer.close()


def _inbound(*, phone_number_id: str | None, display: str, text: str) -> str:
    metadata: dict[str, str] = {"display_phone_number": display}
    if phone_number_id:
        metadata["phone_number_id"] = phone_number_id
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "waba-1", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": metadata,
            "contacts": [{"profile": {"name": "Ali"}, "wa_id": "60123456789"}],
            "messages": [{"from": "60123456789", "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": text}}]}}]}]})


async def _apply(processor: WebhookProcessor, provider: str, body: str, channel: str | None = None) -> dict[str, int]:
    job = {"kind": WEBHOOK_KIND, "provider": provider, "body": body, "receivedAt": time.time()}
    if channel is not None:
        job["channel"] = channel
    return dict((await processor.process_webhook(job)).get("items", {}))


async def _stored(db: Database, text: str) -> list[str]:
    rows = await db.fetch("SELECT company_id FROM messages WHERE direction = 'inbound' AND content = $1", text)
    return [r["company_id"] for r in rows]


async def _kept_aside(db: Database, text: str) -> list[tuple[str, object]]:
    rows = await db.fetch("SELECT routing, candidates FROM meta_webhook_changes WHERE company_id IS NULL "
                          "AND value->'message'->'text'->>'body' = $1", text)
    return [(r["routing"], r["candidates"]) for r in rows]


async def _warnings(db: Database, event_type: str) -> list[dict[str, object]]:
    rows = await db.fetch("SELECT event_data FROM process_events WHERE event_type = $1 AND severity = 'warning'",
                          event_type)
    return [r["event_data"] if isinstance(r["event_data"], dict) else json.loads(r["event_data"]) for r in rows]


async def test_two_360dialog_phones_with_one_display_number_get_neither_message(
        db: Database, processor: WebhookProcessor) -> None:
    await add_d360_phone(db, company_id="aaa-first", channel_id="ch-a", display="+60 12-345 6789")
    await add_d360_phone(db, company_id="zzz-second", channel_id="ch-z", display="60123456789")
    outcome = await _apply(processor, "360dialog", _inbound(phone_number_id=None, display="60123456789",
                                                            text="for whom?"))
    assert outcome == {"ambiguous_phone": 1}
    assert await _stored(db, "for whom?") == []
    kept = await _kept_aside(db, "for whom?")
    assert len(kept) == 1 and kept[0][0] == "ambiguous"
    assert kept[0][1] == [{"companyId": "aaa-first", "phoneIndex": 0}, {"companyId": "zzz-second", "phoneIndex": 0}]
    warned = await _warnings(db, "meta.webhook.ambiguous_phone")
    assert warned and warned[0]["reason"] == "several 360dialog phones have this display number"
    # The channel names one phone: that is no guess.
    assert await _apply(processor, "360dialog", _inbound(phone_number_id=None, display="60123456789",
                                                         text="for z"), channel="ch-z") == {"stored": 1}
    assert await _stored(db, "for z") == ["zzz-second"]


async def test_a_channel_and_a_phone_number_id_naming_different_phones_route_nowhere(
        db: Database, processor: WebhookProcessor) -> None:
    await add_d360_phone(db, company_id="holder", channel_id="ch-h", display="111")
    await add_meta_phone(db, company_id="meta-co", phone_number_id="555000111", display="222")
    outcome = await _apply(processor, "360dialog", _inbound(phone_number_id="555000111", display="222",
                                                            text="mixed"), channel="ch-h")
    assert outcome == {"ambiguous_phone": 1}
    assert await _stored(db, "mixed") == []
    # A channel whose phone is proven to be another number than the webhook's is no match either.
    await db.execute("UPDATE phone_configs SET meta_phone_number_id = '999000999' WHERE company_id = 'holder'")
    other = await _apply(processor, "360dialog", _inbound(phone_number_id="777000777", display="111",
                                                          text="not yours"), channel="ch-h")
    assert other == {"ambiguous_phone": 1}
    assert await _stored(db, "not yours") == []


async def test_a_webhook_naming_no_phone_is_kept_aside_and_listed_for_the_operator(
        db: Database, database_url: str, processor: WebhookProcessor, tmp_path: Path) -> None:
    outcome = await _apply(processor, "meta", _inbound(phone_number_id="123123123", display="333", text="nobody"))
    assert outcome == {"unknown_phone": 1}
    assert await _stored(db, "nobody") == []
    assert [k[0] for k in await _kept_aside(db, "nobody")] == ["unmatched"]
    assert await _warnings(db, "meta.webhook.unknown_phone")
    env = clean_env(DATABASE_URL=database_url, DATA_DIR=str(tmp_path), PATH=os.environ.get("PATH", ""))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bisnesgpt", "inbound", "unrouted", "--json",
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    listed = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert [(r["routing"], r["phoneNumberId"], r["field"]) for r in listed] == [
        ("unmatched", "123123123", "messages.unrouted")]
    assert listed[0]["value"]["message"]["text"]["body"] == "nobody"
