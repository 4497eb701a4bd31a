"""Forwards and link previews on WhatsApp Web without a network: the stored payload's translation,
the sandbox wire frame, and the neonize driver's whatsmeow messages up to its send call."""

from __future__ import annotations

from typing import Any

import pytest

from bisnesgpt.engines.wwebjs.driver import Location, MediaSource, OutgoingMessage, SessionKey
from bisnesgpt.engines.wwebjs.drivers import sandbox_wire as wire
from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeDriver
from bisnesgpt.engines.wwebjs.media import MediaFetcher
from bisnesgpt.engines.wwebjs.outgoing import to_outgoing
from bisnesgpt.messaging.errors import PermanentSendError
from tests.unit.test_wwebjs_logic import record

pytestmark = pytest.mark.unit


def test_a_forward_is_the_originals_content_marked_forwarded() -> None:
    text = to_outgoing(record({"type": "forward", "to": "60190000003", "forward": {
        "message_id": "orig-1", "type": "text", "text": {"body": "Order #4711 is ready"}}}))
    assert (text.kind, text.text, text.forwarded, text.reply_to, text.to) == (
        "text", "Order #4711 is ready", True, None, "60123456789@c.us")
    image = to_outgoing(record({"type": "forward", "forward": {
        "message_id": "orig-2", "type": "image", "image": {"id": "med_0193", "caption": "Menu"}}}))
    assert image.kind == "image" and image.forwarded and image.text == "Menu"
    assert image.media is not None and image.media.media_id == "med_0193"
    pin = to_outgoing(record({"type": "forward", "forward": {
        "message_id": "orig-3", "type": "location", "location": {"latitude": 3.1, "longitude": 101.7}}}))
    assert pin.kind == "location" and pin.forwarded and pin.location is not None
    plain = to_outgoing(record({"type": "text", "text": {"body": "hi"}}))
    assert plain.forwarded is False


@pytest.mark.parametrize("forward", [
    {"message_id": "x", "type": "reaction", "reaction": {"message_id": "y", "emoji": "👍"}},
    {"message_id": "x", "type": "forward", "forward": {}},
    {"message_id": "x"},
])
def test_a_forward_of_anything_but_content_fails_permanently(forward: dict[str, Any]) -> None:
    with pytest.raises(PermanentSendError) as failed:
        to_outgoing(record({"type": "forward", "forward": forward}))
    assert failed.value.code == "INVALID_PAYLOAD"


def test_the_wire_frame_carries_the_forwarded_and_preview_flags_only_when_set() -> None:
    forwarded = OutgoingMessage("text", "601@c.us", "m1", text="hi", forwarded=True)
    assert wire.wire_message(forwarded, None)["forwarded"] is True
    previewed = OutgoingMessage("text", "601@c.us", "m2", text="https://example.com", preview_url=True)
    frame = wire.wire_message(previewed, None)
    assert frame["previewUrl"] is True and "forwarded" not in frame
    assert "previewUrl" not in wire.wire_message(OutgoingMessage("text", "601@c.us", "m3", text="x"), None)


class SendingClient:
    """Stands in for neonize's client at the send boundary: keeps each message given to ``send_message``."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, dict[str, Any]]] = []

    async def send_message(self, chat: Any, message: Any, **options: Any) -> Any:
        from neonize.proto.Neonize_pb2 import SendResponse

        self.sent.append((chat, message, options))
        return SendResponse(ID="3EB0F0RWARD", Timestamp=1767261568)

    async def build_image_message(self, data: bytes, caption: str | None = None) -> Any:
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ImageMessage, Message

        return Message(imageMessage=ImageMessage(caption=caption or "", mimetype="image/png"))


def _session() -> tuple[Any, SendingClient]:
    driver = NeonizeDriver(None, "postgresql://unused", schema="wa", sslmode="disable",  # type: ignore[arg-type]
                           media=MediaFetcher(1 << 20, 5))
    session = driver.session(SessionKey("neo", 0), lambda _event: None, None)
    client = SendingClient()
    session.client, session.ready = client, True  # type: ignore[attr-defined]
    return session, client


async def test_neonize_marks_forwards_in_the_context_info_of_each_kind() -> None:
    session, client = _session()
    sent = await session.send(OutgoingMessage("text", "60190000003@c.us", "m1", text="Order ready", forwarded=True))
    assert sent.id == "3EB0F0RWARD"
    chat, text, _ = client.sent[0]
    assert (chat.User, chat.Server) == ("60190000003", "s.whatsapp.net")
    assert not text.HasField("conversation") and text.extendedTextMessage.text == "Order ready"
    context = text.extendedTextMessage.contextInfo
    assert (context.isForwarded, context.forwardingScore, context.stanzaID) == (True, 1, "")
    assert "link_preview" not in client.sent[0][2]
    await session.send(OutgoingMessage("image", "60190000003@c.us", "m2", text="Menu", forwarded=True,
                                       media=MediaSource(data=b"\x89PNG", mime_type="image/png")))
    image = client.sent[1][1].imageMessage
    assert (image.caption, image.contextInfo.isForwarded, image.contextInfo.forwardingScore) == ("Menu", True, 1)
    await session.send(OutgoingMessage("location", "120363@g.us", "m3", forwarded=True,
                                       location=Location(latitude=3.1, longitude=101.7, name="KL", address=None)))
    chat, pin, _ = client.sent[2]
    assert chat.Server == "g.us" and pin.locationMessage.contextInfo.isForwarded is True
    await session.send(OutgoingMessage("text", "601@c.us", "m4", text="not forwarded"))
    assert client.sent[3][1].conversation == "not forwarded"


async def test_neonize_asks_a_link_preview_by_the_matched_link_and_never_otherwise() -> None:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage

    session, client = _session()
    body = "Our menu: https://example.com/menu?day=1 and https://example.org"
    await session.send(OutgoingMessage("text", "601@c.us", "m1", text=body, preview_url=True))
    previewed = client.sent[0][1].extendedTextMessage
    assert (previewed.text, previewed.matchedText) == (body, "https://example.com/menu?day=1")
    assert previewed.HasField("previewType") and previewed.previewType == ExtendedTextMessage.PreviewType.NONE
    assert not previewed.HasField("title") and not previewed.HasField("JPEGThumbnail")  # nothing fetched
    await session.send(OutgoingMessage("text", "601@c.us", "m2", text=body))
    assert client.sent[1][1].conversation == body  # no preview asked: a plain text, no matchedText
    await session.send(OutgoingMessage("text", "601@c.us", "m3", text=body, reply_to="3EB0AA"))
    quoted = client.sent[2][1].extendedTextMessage
    assert quoted.contextInfo.stanzaID == "3EB0AA" and not quoted.HasField("matchedText")
    await session.send(OutgoingMessage("text", "601@c.us", "m4", text="no link here", preview_url=True))
    assert client.sent[3][1].conversation == "no link here"  # nothing to preview
    assert all("link_preview" not in options for _, _, options in client.sent)
