"""From the stored Cloud-API-shaped payload (COMMON payload contract) to an ``OutgoingMessage``.

WhatsApp Web has no templates or interactive messages; those (and anything unknown) fail
permanently with ``UNSUPPORTED_MESSAGE_TYPE`` before anything is sent. Media given by a
Cloud API media ``id`` cannot be fetched from WhatsApp Web either (``MEDIA_ID_UNSUPPORTED``);
media comes by ``link`` (http(s), downloaded by the driver) or as a ``data:`` URL (bytes).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_to_bytes

from bisnesgpt.engines.wwebjs.driver import MediaSource, OutgoingMessage
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.store import MessageRecord

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
SUPPORTED = (*MEDIA_KINDS, "text", "location", "reaction", "edit", "delete")


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


def _media_source(kind: str, body: dict[str, Any], mime_type: str | None) -> MediaSource:
    link = body.get("link")
    if isinstance(link, str) and link.startswith("data:"):
        data, mime = parse_data_url(link)
        return MediaSource(data=data, mime_type=mime or mime_type, filename=body.get("filename"))
    if isinstance(link, str) and link.startswith(("http://", "https://")):
        return MediaSource(url=link, mime_type=mime_type, filename=body.get("filename"))
    if body.get("id"):
        raise PermanentSendError(
            "a Cloud API media id cannot be used on a WhatsApp Web session; send the media by link",
            code="MEDIA_ID_UNSUPPORTED", title="Media id not supported on WhatsApp Web",
        )
    raise _invalid(f"{kind} needs a 'link' (http(s) or data: URL)")


def _target(body: Any, kind: str) -> str:
    target = body.get("message_id") if isinstance(body, dict) else None
    if not isinstance(target, str) or not target:
        raise _invalid(f"{kind} needs 'message_id' (the provider id of the message it refers to)")
    return target


def to_outgoing(message: MessageRecord) -> OutgoingMessage:
    """Translate a queued message; raise PermanentSendError for what WhatsApp Web cannot send."""
    payload = message.payload or {}
    kind = str(payload.get("type") or message.message_type or "text")
    if kind not in SUPPORTED:
        raise _unsupported(kind)
    body = payload.get(kind)
    if not isinstance(body, dict):
        raise _invalid(f"payload has no '{kind}' object")
    context = payload.get("context")
    reply_to = context.get("message_id") if isinstance(context, dict) else None
    common: dict[str, Any] = {"to": message.chat_id, "client_id": message.message_id,
                              "reply_to": reply_to if isinstance(reply_to, str) and reply_to else None}
    if kind == "text":
        text = body.get("body")
        if not isinstance(text, str) or not text:
            raise _invalid("text needs a non-empty 'body'")
        return OutgoingMessage("text", text=text, preview_url=bool(body.get("preview_url")), **common)
    if kind in MEDIA_KINDS:
        source = _media_source(kind, body, message.media_mime_type)
        caption = body.get("caption") if isinstance(body.get("caption"), str) else None
        return OutgoingMessage(kind, text=caption, media=source, **common)  # type: ignore[arg-type]
    if kind == "location":
        try:
            # float() refuses what is not a number (TypeError/ValueError, caught below).
            location = {"latitude": float(body["latitude"]), "longitude": float(body["longitude"]),  # type: ignore[arg-type]
                        "name": body.get("name"), "address": body.get("address")}
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid("location needs numeric 'latitude' and 'longitude'") from exc
        return OutgoingMessage("location", location=location, **common)
    if kind == "reaction":
        emoji = body.get("emoji")
        if not isinstance(emoji, str):
            raise _invalid("reaction needs 'emoji' (empty string removes the reaction)")
        return OutgoingMessage("reaction", target_id=_target(body, kind), text=emoji, **common)
    if kind == "edit":
        text_body = body.get("text")
        new_text = text_body.get("body") if isinstance(text_body, dict) else None
        if not isinstance(new_text, str) or not new_text:
            raise _invalid("edit needs 'text': {'body': ...}")
        return OutgoingMessage("edit", target_id=_target(body, kind), text=new_text, **common)
    return OutgoingMessage("delete", target_id=_target(body, kind), **common)
