"""Pure logic of the WhatsApp-Web engine: payload translation, backoff, breaker, pacing, QR, ids."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from bisnesgpt.config import load_settings
from bisnesgpt.core.errors import ConfigError
from bisnesgpt.engines.wwebjs.backoff import Backoff, CircuitBreaker
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.driver_events import InboundMedia, InboundMessage
from bisnesgpt.engines.wwebjs.drivers.faults import DriverFaults
from bisnesgpt.engines.wwebjs.inbound import inbound_payload
from bisnesgpt.engines.wwebjs.outgoing import parse_data_url, to_outgoing
from bisnesgpt.engines.wwebjs.pacing import SessionPacer
from bisnesgpt.engines.wwebjs.qr import png_from_data_url, qr_data_url
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.store import MessageRecord
from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.wwebjs import qr_matrix_from_png, qr_matrix_of

pytestmark = pytest.mark.unit


def record(payload: dict[str, Any], **overrides: Any) -> MessageRecord:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": 1, "message_id": "msg-1", "company_id": "acme", "phone_index": 0, "direction": "outbound",
        "provider": "wwebjs", "connection_type": "wwebjs", "chat_id": "60123456789@c.us",
        "message_type": payload.get("type", "text"), "content": None, "media_url": None, "media_id": None,
        "media_mime_type": None, "media_filename": None, "payload": payload, "raw": None, "status": "queued",
        "external_id": None, "context_message_id": None, "error_code": None, "error_title": None,
        "error_details": None, "attempts": 0, "idempotency_key": None, "queue_name": "wwebjs-messages",
        "process_name": "wwebjs", "source": "api", "deadline_at": None, "created_at": now, "updated_at": now,
        "queued_at": now, "sent_at": None, "delivered_at": None, "read_at": None, "failed_at": None,
    }
    values.update(overrides)
    return MessageRecord(**values)


# --- payload translation -------------------------------------------------------------------------


def test_text_reply_and_preview() -> None:
    out = to_outgoing(record({"type": "text", "to": "60123456789", "text": {"body": "hi", "preview_url": True},
                              "context": {"message_id": "3EB0AA"}}))
    assert (out.kind, out.to, out.text, out.reply_to, out.preview_url, out.client_id) == (
        "text", "60123456789@c.us", "hi", "3EB0AA", True, "msg-1")


def test_media_by_link_and_by_data_url() -> None:
    by_link = to_outgoing(record({"type": "image", "image": {"link": "https://cdn.example/a.png", "caption": "c"}}))
    assert by_link.kind == "image" and by_link.media is not None and by_link.media.url == "https://cdn.example/a.png"
    assert by_link.text == "c"
    data = base64.b64encode(b"%PDF-1.4 x").decode()
    by_bytes = to_outgoing(record({"type": "document", "document": {"link": f"data:application/pdf;base64,{data}",
                                                                    "filename": "q.pdf"}}))
    assert by_bytes.media is not None and by_bytes.media.data == b"%PDF-1.4 x"
    assert (by_bytes.media.mime_type, by_bytes.media.filename) == ("application/pdf", "q.pdf")
    assert parse_data_url("data:,hello%20world") == (b"hello world", None)


def test_reaction_edit_delete_location() -> None:
    reaction = to_outgoing(record({"type": "reaction", "reaction": {"message_id": "3EB0X", "emoji": ""}}))
    assert (reaction.kind, reaction.target_id, reaction.text) == ("reaction", "3EB0X", "")
    edit = to_outgoing(record({"type": "edit", "edit": {"message_id": "3EB0X", "text": {"body": "new"}}}))
    assert (edit.kind, edit.target_id, edit.text) == ("edit", "3EB0X", "new")
    delete = to_outgoing(record({"type": "delete", "delete": {"message_id": "3EB0X"}}))
    assert (delete.kind, delete.target_id) == ("delete", "3EB0X")
    location = to_outgoing(record({"type": "location", "location": {"latitude": "3.1", "longitude": 101.7}}))
    assert location.location == {"latitude": 3.1, "longitude": 101.7, "name": None, "address": None}


@pytest.mark.parametrize(("payload", "code"), [
    ({"type": "template", "template": {"name": "hello"}}, "UNSUPPORTED_MESSAGE_TYPE"),
    ({"type": "interactive", "interactive": {}}, "UNSUPPORTED_MESSAGE_TYPE"),
    ({"type": "image", "image": {"id": "123"}}, "MEDIA_ID_UNSUPPORTED"),
    ({"type": "image", "image": {"link": "ftp://x/y"}}, "INVALID_PAYLOAD"),
    ({"type": "text", "text": {"body": ""}}, "INVALID_PAYLOAD"),
    ({"type": "edit", "edit": {"text": {"body": "x"}}}, "INVALID_PAYLOAD"),
    ({"type": "document", "document": {"link": "data:application/pdf;base64,@@@"}}, "INVALID_PAYLOAD"),
])
def test_what_cannot_be_sent_fails_permanently_with_a_code(payload: dict[str, Any], code: str) -> None:
    with pytest.raises(PermanentSendError) as caught:
        to_outgoing(record(payload))
    assert caught.value.code == code


# --- backoff, breaker, pacing --------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(400, 2000, rand=lambda: 0.5)  # 0.5 = no jitter
    assert [backoff.next_delay_ms() for _ in range(5)] == [400, 800, 1600, 2000, 2000]
    backoff.reset()
    assert backoff.next_delay_ms() == 400
    jittery = Backoff(1000, 10_000, rand=lambda: 1.0)
    assert jittery.next_delay_ms() == 1200


def test_breaker_trips_on_n_disconnects_within_the_window_only() -> None:
    now = [0.0]
    breaker = CircuitBreaker(3, 60, clock=lambda: now[0])
    assert not breaker.record()
    now[0] = 70  # the first one is out of the window by now
    assert not breaker.record()
    now[0] = 80
    assert not breaker.record()
    now[0] = 100
    assert breaker.record()
    assert breaker.describe() == "flapping: 3 disconnects within 1 minute"


def test_pacer_spaces_sends_per_session_and_refuses_long_waits() -> None:
    now = [0.0]
    pacer = SessionPacer(10, 0, clock=lambda: now[0], rand=lambda: 0.0)
    key, other = SessionKey("a", 0), SessionKey("b", 0)
    waits = [pacer.reserve(key, max_wait=1.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert pacer.reserve(other, max_wait=1.0) == 0.0  # per session
    assert pacer.reserve(key, max_wait=0.2) is None
    now[0] = 10
    assert pacer.reserve(key, max_wait=0.0) == 0.0
    jitter = SessionPacer(10, 500, clock=lambda: 0.0, rand=lambda: 1.0)
    jitter.reserve(key, max_wait=5)
    assert jitter.reserve(key, max_wait=5) == pytest.approx(0.6)


# --- QR, ids, keys --------------------------------------------------------------------------------


def test_qr_data_url_is_a_png_of_the_code() -> None:
    code = "2@abcdefghijklmnop,bm9pc2U=,aWRlbnRpdHk=,YWR2"
    png = png_from_data_url(qr_data_url(code))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert qr_matrix_from_png(png) == qr_matrix_of(code)
    assert qr_matrix_from_png(png) != qr_matrix_of(code + "x")
    with pytest.raises(ValueError, match="PNG"):
        png_from_data_url("data:image/jpeg;base64,AAAA")


def test_message_ids_are_whatsapp_web_style_and_stable() -> None:
    first = wa_message_id("0192f0a4-aaaa-7bbb-8ccc-000000000001")
    assert first == wa_message_id("0192f0a4-aaaa-7bbb-8ccc-000000000001")
    assert first != wa_message_id("0192f0a4-aaaa-7bbb-8ccc-000000000002")
    assert first.startswith("3EB0") and len(first) == 22 and first == first.upper()


def test_session_keys_and_lease_names() -> None:
    key = SessionKey("acme.co", 3)
    assert SessionKey.parse(str(key)) == key
    assert SessionKey.from_lease_name(key.lease_name) == key
    assert SessionKey.from_lease_name("outbox-reconciler") is None
    with pytest.raises(ValueError, match="session key"):
        SessionKey.parse("acme")


def test_inbound_payload_is_cloud_api_shaped() -> None:
    text = inbound_payload(InboundMessage("3A1", "601@c.us", "601", 1700000000.5, "text", text="hi",
                                          quoted_id="3EB0", push_name="Ali"))
    assert text == {"from": "601", "id": "3A1", "timestamp": "1700000000", "type": "text",
                    "text": {"body": "hi"}, "profile": {"name": "Ali"}, "context": {"id": "3EB0"}}
    image = inbound_payload(InboundMessage("3A2", "601@c.us", "601", 1700000000, "image",
                                           media=InboundMedia("image", mime_type="image/png", caption="c")))
    assert image["image"] == {"mime_type": "image/png", "caption": "c"}


def test_settings_of_the_engine_are_validated() -> None:
    settings = load_settings(wwebjs_driver="sandbox", wwebjs_sandbox_url="http://127.0.0.1:9/")
    assert settings.wwebjs_sandbox_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="WWEBJS_DRIVER"):
        load_settings(wwebjs_driver="puppeteer")
    with pytest.raises(ConfigError, match="WWEBJS_SANDBOX_URL"):
        load_settings(wwebjs_sandbox_url="ws://sandbox")
    with pytest.raises(ConfigError, match="WWEBJS_STORE_SCHEMA"):
        load_settings(wwebjs_store_schema="drop table")


async def test_driver_faults_grow_memory_and_slow_sends_until_cleared() -> None:
    faults = DriverFaults()
    faults.apply("slow_sends", {"delayMs": 30})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await faults.before_send()
    assert loop.time() - started >= 0.025
    faults.apply("memory_growth", {"mbPerSecond": 20, "maxMb": 6})
    for _ in range(60):
        if faults.ballast_mb >= 4:
            break
        await asyncio.sleep(0.05)
    assert 4 <= faults.ballast_mb <= 6
    faults.apply("clear", {})
    assert faults.ballast_mb == 0 and faults.slow_ms == 0
    blocked_from = loop.time()
    faults.apply("freeze", {"seconds": 0.2})  # blocks the event loop itself, like a hung browser
    assert loop.time() - blocked_from >= 0.2
    await faults.close()
