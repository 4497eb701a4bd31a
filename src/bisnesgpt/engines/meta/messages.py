"""Cloud API request bodies: builders for every message type, and payload normalisation.

The builders are the client's vocabulary ("send this text to that number, as a reply to
…"); each returns the JSON body ``POST /{phone_number_id}/messages`` expects. The worker
sends ``messages.payload`` (already Cloud-API-shaped, see the payload contract) through
``body_from_payload``, which fills the envelope and refuses types the Cloud API lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.messaging.errors import PermanentSendError

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
CLOUD_API_TYPES = frozenset({"text", *MEDIA_TYPES, "location", "contacts", "interactive", "template", "reaction"})
# Payload-contract extensions that only WhatsApp Web can do.
WEB_ONLY_TYPES = frozenset({"edit", "delete", "poll", "status"})

# A request body is a JSON object; the parts callers pass in are JSON objects of their own.
Body = JsonObject
Part = Mapping[str, JsonValue]


def _envelope(to: str, kind: str, content: JsonValue, *, reply_to: str | None = None,
              recipient_type: str = "individual") -> Body:
    body: Body = {"messaging_product": "whatsapp", "recipient_type": recipient_type, "to": to, "type": kind,
                  kind: content}
    if reply_to:
        body["context"] = {"message_id": reply_to}
    return body


def _compact(values: Part) -> JsonObject:
    return {k: v for k, v in values.items() if v is not None}


def text(to: str, body: str, *, preview_url: bool | None = None, reply_to: str | None = None) -> Body:
    """A text message (``preview_url`` asks WhatsApp to render the first link's preview)."""
    return _envelope(to, "text", _compact({"body": body, "preview_url": preview_url}), reply_to=reply_to)


def media(kind: str, to: str, *, media_id: str | None = None, link: str | None = None, caption: str | None = None,
          filename: str | None = None, reply_to: str | None = None) -> Body:
    """image/video/audio/document/sticker by uploaded ``media_id`` or by ``link``."""
    if kind not in MEDIA_TYPES:
        raise ValueError(f"not a media type: {kind!r}")
    if (media_id is None) == (link is None):
        raise ValueError("give exactly one of media_id or link")
    content = _compact({"id": media_id, "link": link, "caption": caption, "filename": filename})
    return _envelope(to, kind, content, reply_to=reply_to)


def location(to: str, *, latitude: float, longitude: float, name: str | None = None, address: str | None = None,
             reply_to: str | None = None) -> Body:
    """A location pin, optionally named and with an address."""
    content = _compact({"latitude": latitude, "longitude": longitude, "name": name, "address": address})
    return _envelope(to, "location", content, reply_to=reply_to)


def contacts(to: str, cards: Sequence[Part], *, reply_to: str | None = None) -> Body:
    """Contact cards (``name``, ``phones``, ``emails``, ``addresses``, ``org``, ``urls``, ``birthday``)."""
    return _envelope(to, "contacts", [dict(card) for card in cards], reply_to=reply_to)


def interactive(to: str, content: Part, *, reply_to: str | None = None) -> Body:
    """Any interactive object (button, list, product, product_list, catalog_message, flow, …)."""
    return _envelope(to, "interactive", dict(content), reply_to=reply_to)


def _frame(kind: str, body_text: str | None, action: JsonObject, header: Part | None,
           footer: str | None) -> JsonObject:
    content: JsonObject = {"type": kind}
    if header is not None:
        content["header"] = dict(header)
    if body_text is not None:
        content["body"] = {"text": body_text}
    if footer is not None:
        content["footer"] = {"text": footer}
    content["action"] = action
    return content


def reply_buttons(to: str, body_text: str, buttons: Iterable[tuple[str, str]], *,
                  header: Part | None = None, footer: str | None = None,
                  reply_to: str | None = None) -> Body:
    """Up to three reply buttons given as ``(id, title)`` pairs."""
    replies: list[JsonValue] = [{"type": "reply", "reply": {"id": bid, "title": title}} for bid, title in buttons]
    action: JsonObject = {"buttons": replies}
    return interactive(to, _frame("button", body_text, action, header, footer), reply_to=reply_to)


def list_message(to: str, body_text: str, button: str, sections: Sequence[Part], *,
                 header: Part | None = None, footer: str | None = None,
                 reply_to: str | None = None) -> Body:
    """A list: ``sections`` of ``{"title", "rows": [{"id", "title", "description"}]}``."""
    action: JsonObject = {"button": button, "sections": [dict(section) for section in sections]}
    return interactive(to, _frame("list", body_text, action, header, footer), reply_to=reply_to)


def template(to: str, name: str, language: str, *, components: Sequence[Part] | None = None,
             policy: str | None = None, reply_to: str | None = None) -> Body:
    """An approved template with its components' parameters."""
    content: JsonObject = {"name": name, "language": _compact({"code": language, "policy": policy})}
    if components is not None:
        content["components"] = [dict(component) for component in components]
    return _envelope(to, "template", content, reply_to=reply_to)


def reaction(to: str, message_id: str, emoji: str) -> Body:
    """React to a message (an empty ``emoji`` removes the reaction)."""
    return _envelope(to, "reaction", {"message_id": message_id, "emoji": emoji})


def mark_as_read(message_id: str, *, typing_indicator: bool = False) -> Body:
    """Mark an inbound message read (optionally showing a typing indicator)."""
    body: Body = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    if typing_indicator:
        body["typing_indicator"] = {"type": "text"}
    return body


def body_from_payload(payload: Part, *, contact: str, group: bool = False) -> Body:
    """The request body for a stored ``messages.payload`` (payload contract shape).

    Fills the envelope (``messaging_product``, ``recipient_type``, ``to``, ``type``) and
    refuses, permanently, what the Cloud API cannot send.
    """
    kind = str(payload.get("type") or "text")
    if kind in WEB_ONLY_TYPES:
        raise PermanentSendError(f"the Cloud API cannot send '{kind}' messages", code="UNSUPPORTED_MESSAGE_TYPE",
                                 title=f"Message type '{kind}' is not supported by the Cloud API")
    if kind not in CLOUD_API_TYPES:
        raise PermanentSendError(f"unknown message type {kind!r}", code="UNSUPPORTED_MESSAGE_TYPE",
                                 title=f"Message type '{kind}' is not supported by the Cloud API")
    if kind not in payload:
        raise PermanentSendError(f"payload has type {kind!r} but no '{kind}' object", code="INVALID_PAYLOAD",
                                 title="Message payload is incomplete")
    body: Body = {
        "messaging_product": "whatsapp",
        "recipient_type": "group" if group else str(payload.get("recipient_type") or "individual"),
        "to": str(payload.get("to") or contact),
        "type": kind,
        kind: payload[kind],
    }
    context = payload.get("context")
    if isinstance(context, dict) and context.get("message_id"):
        body["context"] = {"message_id": str(context["message_id"])}
    text_object = body["text"] if kind == "text" else None
    if isinstance(text_object, dict) and "preview_url" in text_object:
        body["text"] = {**text_object, "preview_url": bool(text_object["preview_url"])}
    return body
