"""From the stored Cloud-API-shaped payload (COMMON payload contract) to an ``OutgoingMessage``.

WhatsApp Web has no templates or interactive messages; those (and anything unknown) fail
permanently with ``UNSUPPORTED_MESSAGE_TYPE`` before anything is sent. Media given by a
Cloud API media ``id`` cannot be fetched from WhatsApp Web either (``MEDIA_ID_UNSUPPORTED``);
media comes by ``link`` (http(s), downloaded by the driver), as a ``data:`` URL (bytes), or
by the ``med_…`` id of an upload to the gateway (its bytes read by the engine).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Literal
from urllib.parse import unquote_to_bytes

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.engines.wwebjs.driver import Location, MediaSource, OutgoingKind, OutgoingMessage, Poll, StatusPost
from bisnesgpt.engines.wwebjs.vcards import card_of
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.store import MessageRecord

UPLOADED_PREFIX = "med_"
MEDIA_KINDS: tuple[OutgoingKind, ...] = ("image", "video", "audio", "document", "sticker")
SUPPORTED: tuple[OutgoingKind | Literal["forward"], ...] = (
    *MEDIA_KINDS, "text", "location", "contacts", "poll", "status", "reaction", "edit", "delete", "forward")
# What a forward may carry: the original's content (its ``type`` and ``T`` object).
FORWARDED_KINDS = (*MEDIA_KINDS, "text", "location", "contacts")


def _unsupported(kind: str) -> PermanentSendError:
    return PermanentSendError(
        f"WhatsApp Web sessions cannot send '{kind}' messages; use a Cloud API phone for templates "
        "and interactive messages",
        code="UNSUPPORTED_MESSAGE_TYPE", title=f"Message type '{kind}' is not supported on WhatsApp Web",
    )


def _invalid(detail: str) -> PermanentSendError:
    return PermanentSendError(detail, code="INVALID_PAYLOAD", title="Invalid message payload")


def parse_data_url(url: str) -> tuple[bytes, str | None]:
    """``data:[<mime>][;base64],<data>`` -> (bytes, mime type)."""
    header, sep, data = url[5:].partition(",")
    if not sep:
        raise _invalid("malformed data: URL (no comma)")
    parts = header.split(";")
    mime = parts[0] or None
    try:
        body = base64.b64decode(data, validate=True) if "base64" in parts[1:] else unquote_to_bytes(data)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"malformed data: URL: {exc}") from exc
    return body, mime


def _media_source(kind: str, body: JsonObject, mime_type: str | None) -> MediaSource:
    link = body.get("link")
    filename = _text(body.get("filename"))
    if isinstance(link, str) and link.startswith("data:"):
        data, mime = parse_data_url(link)
        return MediaSource(data=data, mime_type=mime or mime_type, filename=filename)
    if isinstance(link, str) and link.startswith(("http://", "https://")):
        return MediaSource(url=link, mime_type=mime_type, filename=filename)
    media_id = body.get("id")
    if isinstance(media_id, str) and media_id.startswith(UPLOADED_PREFIX):
        return MediaSource(media_id=media_id, mime_type=mime_type, filename=filename)
    if media_id:
        raise PermanentSendError(
            "a Cloud API media id cannot be used on a WhatsApp Web session; upload the file with "
            "POST /api/v1/media and send its med_ id, or send the media by link",
            code="MEDIA_ID_UNSUPPORTED", title="Media id not supported on WhatsApp Web",
        )
    raise _invalid(f"{kind} needs a 'link' (http(s) or data: URL)")


def _target(body: JsonObject, kind: str) -> str:
    target = body.get("message_id")
    if not isinstance(target, str) or not target:
        raise _invalid(f"{kind} needs 'message_id' (the provider id of the message it refers to)")
    return target


def to_outgoing(message: MessageRecord) -> OutgoingMessage:
    """Translate a queued message; raise PermanentSendError for what WhatsApp Web cannot send."""
    payload: JsonObject = message.payload or {}
    if payload.get("type") == "forward":
        return _forward(message, payload)
    return _translate(message, payload)


def _translate(message: MessageRecord, payload: JsonObject) -> OutgoingMessage:
    kind = _supported_kind(str(payload.get("type") or message.message_type or "text"))
    if kind == "forward":
        raise _invalid("a forward carries the original's content, not another forward")
    context = payload.get("context")
    reply_to = _text(context.get("message_id")) if isinstance(context, dict) else None
    to, client_id, reply_to = message.chat_id, message.message_id, reply_to or None
    if kind == "contacts":
        cards = payload.get("contacts")
        if not isinstance(cards, list) or not cards or not all(isinstance(c, dict) for c in cards):
            raise _invalid("contacts needs a list of contact objects")
        return OutgoingMessage("contacts", to, client_id, reply_to=reply_to,
                               contacts=tuple(card_of(c) for c in cards if isinstance(c, dict)))
    body = payload.get(kind)
    if not isinstance(body, dict):
        raise _invalid(f"payload has no '{kind}' object")
    if kind in ("poll", "location", "status"):
        return _structured(kind, to, client_id, body, reply_to, message.media_mime_type)
    if kind == "text":
        text = body.get("body")
        if not isinstance(text, str) or not text:
            raise _invalid("text needs a non-empty 'body'")
        mentions = body.get("mentions")
        return OutgoingMessage("text", to, client_id, text=text, preview_url=bool(body.get("preview_url")),
                               reply_to=reply_to,
                               mentions=tuple(str(m) for m in mentions) if isinstance(mentions, list) else ())
    if kind in MEDIA_KINDS:
        source = _media_source(kind, body, message.media_mime_type)
        return OutgoingMessage(kind, to, client_id, text=_text(body.get("caption")), media=source,
                               reply_to=reply_to)
    if kind == "edit":
        text_body = body.get("text")
        new_text = text_body.get("body") if isinstance(text_body, dict) else None
        if not isinstance(new_text, str) or not new_text:
            raise _invalid("edit needs 'text': {'body': ...}")
        return OutgoingMessage("edit", to, client_id, target_id=_target(body, kind), text=new_text, reply_to=reply_to)
    text = None
    if kind == "reaction":
        text = body.get("emoji")
        if not isinstance(text, str):
            raise _invalid("reaction needs 'emoji' (empty string removes the reaction)")
    return OutgoingMessage(kind, to, client_id, target_id=_target(body, kind), text=text, reply_to=reply_to)


def _supported_kind(kind: str) -> OutgoingKind | Literal["forward"]:
    for supported in SUPPORTED:
        if kind == supported:
            return supported
    raise _unsupported(kind)


def _forward(message: MessageRecord, payload: JsonObject) -> OutgoingMessage:
    """A forward: the original's content as its own kind would be sent (no quote), marked ``forwarded``."""
    body = payload.get("forward")
    inner = body.get("type") if isinstance(body, dict) else None
    if not isinstance(body, dict) or inner not in FORWARDED_KINDS:
        raise _invalid("forward needs the original's 'type' (text, media, location or contacts) and its object")
    assert isinstance(inner, str)
    original: JsonObject = {"type": inner, inner: body.get(inner)}
    out = _translate(dataclasses.replace(message, payload=original, message_type=inner), original)
    return dataclasses.replace(out, forwarded=True)


def _structured(kind: OutgoingKind, to: str, client_id: str, body: JsonObject, reply_to: str | None,
                mime_type: str | None) -> OutgoingMessage:
    """A poll, a location or a status post."""
    if kind == "status":
        return _status(to, client_id, body, mime_type)
    return OutgoingMessage(kind, to, client_id, reply_to=reply_to, poll=_poll(body) if kind == "poll" else None,
                           location=_location(body) if kind == "location" else None)


def _status(to: str, client_id: str, body: JsonObject, mime_type: str | None) -> OutgoingMessage:
    recipients = body.get("recipients")
    who = tuple(str(r) for r in recipients) if isinstance(recipients, list) else ()
    font = body.get("font")
    for media_kind in ("image", "video"):
        media = body.get(media_kind)
        if isinstance(media, dict):
            post = StatusPost(media_kind, recipients=who)
            return OutgoingMessage("status", to, client_id, text=_text(body.get("caption")), status=post,
                                   media=_media_source(media_kind, media, mime_type))
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise _invalid("a status post needs 'text', 'image' or 'video'")
    post = StatusPost("text", _text(body.get("background_color")), font if isinstance(font, int) else None, who)
    return OutgoingMessage("status", to, client_id, text=text, status=post)


def _poll(body: JsonObject) -> Poll:
    options = body.get("options")
    count = body.get("selectable_count", 1)
    if (not isinstance(body.get("name"), str) or not isinstance(options, list) or not 2 <= len(options) <= 12
            or not isinstance(count, int)):
        raise _invalid("poll needs 'name', 2 to 12 'options' and a numeric 'selectable_count'")
    return Poll(str(body["name"]), tuple(str(o) for o in options), count)


def _location(body: JsonObject) -> Location:
    return Location(latitude=_coordinate(body, "latitude"), longitude=_coordinate(body, "longitude"),
                    name=_text(body.get("name")), address=_text(body.get("address")))


def _coordinate(body: JsonObject, name: str) -> float:
    value = body.get(name)
    if not isinstance(value, str | int | float):
        raise _invalid("location needs numeric 'latitude' and 'longitude'")
    try:
        return float(value)
    except ValueError as exc:
        raise _invalid("location needs numeric 'latitude' and 'longitude'") from exc


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None
