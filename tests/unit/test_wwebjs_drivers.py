"""What the two drivers share and the sandbox driver's reading of the wire, without a network."""

from __future__ import annotations

import pytest

from bisnesgpt.engines.wwebjs.driver import Location, MediaSource, OutgoingMessage, SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import (
    DriverConnectError,
    DriverError,
    NotConnected,
    PairingUnavailable,
    SendRejected,
)
from bisnesgpt.engines.wwebjs.driver_events import Ready, SessionEvent
from bisnesgpt.engines.wwebjs.drivers import sandbox_wire as wire
from bisnesgpt.engines.wwebjs.drivers.base import SessionBase
from bisnesgpt.engines.wwebjs.drivers.neonize import DeviceJid
from bisnesgpt.engines.wwebjs.media import MediaDownloadFailed
from bisnesgpt.sandbox.wweb.protocol import wa_message_id

pytestmark = pytest.mark.unit


def test_driver_errors_keep_their_codes_titles_and_retryability() -> None:
    assert (DriverError.code, DriverError.summary, DriverError.retryable) == (
        "DRIVER_ERROR", "WhatsApp Web driver error", True)
    assert (DriverConnectError.code, DriverConnectError.summary) == ("CONNECT_FAILED", "Cannot reach WhatsApp Web")
    assert (NotConnected.code, NotConnected.retryable) == ("SESSION_NOT_CONNECTED", True)
    assert (PairingUnavailable.code, PairingUnavailable.retryable) == ("PAIRING_UNAVAILABLE", False)
    assert (MediaDownloadFailed.code, MediaDownloadFailed.summary) == (
        "MEDIA_DOWNLOAD_FAILED", "Media could not be downloaded")
    rejected = SendRejected("no such number", code="RECIPIENT_NOT_ON_WHATSAPP")
    assert (rejected.code, rejected.summary, rejected.retryable) == (
        "RECIPIENT_NOT_ON_WHATSAPP", "Message rejected", False)
    assert SendRejected.code == "DRIVER_ERROR"  # the class keeps its base's default


class FakeSession(SessionBase):
    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        super().__init__(SessionKey("acme", 0), self.events.append)
        self.up = False

    @property
    def connected(self) -> bool:
        return self.up


def test_session_base_checks_and_reports() -> None:
    session = FakeSession()
    with pytest.raises(NotConnected, match="not connected"):
        session.require_connected()
    with pytest.raises(PairingUnavailable):
        session.require_pairable()
    session.up = True
    session.require_pairable()
    with pytest.raises(NotConnected, match="acme:0 is not ready"):
        session.require_ready()
    session.report_ready("60123", "Shop")
    session.require_ready()
    with pytest.raises(PairingUnavailable):
        session.require_pairable()
    session.stopped = True
    session.report_connection_lost("gone")  # the manager stopped it: nothing to say
    assert session.events == [Ready("60123", "Shop")]


def test_device_jid_round_trips_through_the_auth_state() -> None:
    jid = DeviceJid("60123", "s.whatsapp.net", 7, 1)
    assert DeviceJid.from_auth(jid.as_auth()) == jid
    assert jid.as_auth() == {"jid": {"user": "60123", "server": "s.whatsapp.net", "device": 7, "rawAgent": 1}}
    assert DeviceJid.from_auth({}) is None
    assert DeviceJid.from_auth({"jid": {"user": "60123", "server": "s.whatsapp.net"}}) == DeviceJid(
        "60123", "s.whatsapp.net")


def test_wire_messages_leave_out_what_has_no_value() -> None:
    text = OutgoingMessage("text", "601@c.us", "msg-1", text="hi")
    assert wire.wire_message(text, None) == {"id": wa_message_id("msg-1"), "to": "601@c.us", "kind": "text",
                                             "text": "hi"}
    location = Location(latitude=3.1, longitude=101.7, name=None, address=None)
    pin = OutgoingMessage("location", "601@c.us", "msg-2", location=location, reply_to="3EB0X", preview_url=True)
    assert wire.wire_message(pin, None) == {"id": wa_message_id("msg-2"), "to": "601@c.us", "kind": "location",
                                            "replyTo": "3EB0X", "location": location, "previewUrl": True}
    media = wire.UploadedMedia(handle="h1", sha256="ab", size=3, mime="image/png", filename="a.png")
    image = OutgoingMessage("image", "601@c.us", "msg-3", media=MediaSource(data=b"png"))
    assert wire.wire_message(image, media)["media"] == media


def test_send_results_become_sent_messages_or_driver_errors() -> None:
    sent = wire.sent_message({"ref": 1, "id": "3EB0A", "timestamp": 1700000000.5, "duplicate": True})
    assert (sent.id, sent.timestamp, sent.duplicate) == ("3EB0A", 1700000000.5, True)
    with pytest.raises(SendRejected) as rejected:
        wire.sent_message({"ref": 1, "error": {"code": "not-on-whatsapp", "message": "no such user"}})
    assert rejected.value.code == "RECIPIENT_NOT_ON_WHATSAPP"
    with pytest.raises(NotConnected):
        wire.sent_message({"ref": 1, "error": {"code": "not-ready", "message": "wait"}})
    with pytest.raises(DriverError, match=r"send failed: boom \(strange\)") as other:
        wire.sent_message({"ref": 1, "error": {"code": "strange", "message": "boom"}})
    assert other.value.retryable


async def _confirm() -> None:
    return None


def test_inbound_frames_become_inbound_messages() -> None:
    text = wire.inbound_message({"id": "3A1", "from": "601", "timestamp": 1700000000, "type": "text", "text": "hi",
                                 "quotedId": "3EB0", "pushName": "Ali"}, _confirm)
    assert (text.id, text.chat_id, text.sender, text.type, text.text, text.quoted_id, text.push_name) == (
        "3A1", "601@c.us", "601", "text", "hi", "3EB0", "Ali")
    image = wire.inbound_message({"id": "3A2", "from": "601", "chat": "120363@g.us", "type": "image",
                                  "text": "caption", "media": {"mime": "image/png", "size": 12, "url": "http://x/y"}},
                                 _confirm)
    assert image.chat_id == "120363@g.us" and image.text is None and image.media is not None
    assert (image.media.kind, image.media.mime_type, image.media.size, image.media.caption) == (
        "image", "image/png", 12, "caption")
    assert (wire.ack_level({"level": "read"}), wire.ack_level({"level": "seen"})) == ("read", None)


def test_ack_frames_carry_the_receipts_time_when_the_network_gives_it() -> None:
    assert wire.ack_time({"type": "ack", "id": "3EB0", "level": "device", "timestamp": 1_700_000_020.25}) == (
        1_700_000_020.25)
    assert wire.ack_time({"type": "ack", "id": "3EB0", "level": "read"}) is None  # replayed after a reconnect
    assert wire.ack_time({"type": "ack", "id": "3EB0", "level": "read", "timestamp": True}) is None
