"""Parsing Cloud API webhook payloads into the items the processor applies.

A payload is ``{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>,
"changes": [{"field": ..., "value": {...}}]}]}``. A ``messages`` change carries inbound
``messages`` (with the senders' ``contacts``) and/or outbound ``statuses``; every other
field (``account_update``, template and group updates, fields this version has never
heard of) is kept as a ``ChangeItem``. Nothing here raises on unknown shapes: what cannot
be understood is kept, not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.messaging.states import MessageState

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
STATUS_MAP: dict[str, MessageState] = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
# What a ``messages`` change carries besides its messages and statuses that is not kept apart.
_MESSAGES_CHANGE_KEYS = ("messages", "statuses", "contacts", "metadata", "messaging_product")


@dataclass(frozen=True)
class Source:
    """Where an item came from: provider, WABA (entry id), the phone's metadata."""

    provider: str
    waba_id: str | None
    metadata: JsonObject
    field: str

    @property
    def phone_number_id(self) -> str | None:
        """The Cloud API id of the phone the change is about (``metadata.phone_number_id``)."""
        value = self.metadata.get("phone_number_id")
        return str(value) if value else None

    @property
    def display_phone_number(self) -> str:
        """The phone's number as the webhook shows it (``""`` when absent)."""
        return str(self.metadata.get("display_phone_number") or "")

    def under(self, field: str) -> Source:
        """The same source, kept under another ``field`` name (``messages.extra``, ``….unrouted``)."""
        return replace(self, field=field)


@dataclass(frozen=True)
class InboundItem:
    """One inbound message, as the provider sent it, with its sender's ``profile`` (if given)."""

    source: Source
    message: JsonObject
    profile: JsonValue

    @property
    def sender(self) -> str:
        """The sender's number, digits only (``""`` when the message names none)."""
        return "".join(ch for ch in str(self.message.get("from") or "") if ch.isdigit())

    @property
    def external_id(self) -> str | None:
        """The provider's message id (the wamid), the key inbound messages are deduplicated on."""
        return str(self.message.get("id") or "") or None

    @property
    def contact_name(self) -> JsonValue:
        """The sender's profile name, when the change carried the contact's profile."""
        return self.profile.get("name") if isinstance(self.profile, dict) else None


@dataclass(frozen=True)
class StatusItem:
    """One status of an outbound message (``sent``, ``delivered``, ``read``, ``failed``, …)."""

    source: Source
    status: JsonObject

    @property
    def wamid(self) -> str:
        """The id of the message the status is about (``""`` when missing)."""
        return str(self.status.get("id") or "")

    @property
    def our_status(self) -> MessageState | None:
        """The message state this status moves to; None for a status this product does not track."""
        return STATUS_MAP.get(str(self.status.get("status") or ""))

    @property
    def errors(self) -> list[JsonValue] | None:
        """The ``errors`` a failed status carries (None when it has no list of them)."""
        errors = self.status.get("errors")
        return errors if isinstance(errors, list) else None


@dataclass(frozen=True)
class ChangeItem:
    """Any other change (or what a change carried besides messages and statuses), kept as sent."""

    source: Source
    value: JsonObject


Item = InboundItem | StatusItem | ChangeItem


def parse_payload(payload: JsonValue, provider: str) -> list[Item]:
    """Every item in a webhook payload, in order."""
    items: list[Item] = []
    if not isinstance(payload, dict):
        return items
    for entry in as_list(payload.get("entry")):
        if not isinstance(entry, dict):
            continue
        waba_id = str(entry["id"]) if entry.get("id") is not None else None
        for change in as_list(entry.get("changes")):
            if not isinstance(change, dict):
                continue
            field_name = str(change.get("field") or "unknown")
            value = as_dict(change.get("value"))
            metadata = as_dict(value.get("metadata"))
            source = Source(provider, waba_id, metadata, field_name)
            items.extend(_items_of_change(source, value))
    return items


def _items_of_change(source: Source, value: JsonObject) -> list[Item]:
    if source.field != "messages" or not (value.get("messages") or value.get("statuses")):
        return [ChangeItem(source, value)]
    items: list[Item] = []
    profiles = {str(c.get("wa_id")): c.get("profile") for c in as_list(value.get("contacts")) if isinstance(c, dict)}
    for message in as_list(value.get("messages")):
        if isinstance(message, dict):
            items.append(InboundItem(source, message, profiles.get(str(message.get("from")))))
    for status in as_list(value.get("statuses")):
        if isinstance(status, dict):
            items.append(StatusItem(source, status))
    # Anything else the change carries (errors, fields added later) is kept as well.
    extra = {k: v for k, v in value.items() if k not in _MESSAGES_CHANGE_KEYS}
    if extra:
        items.append(ChangeItem(source.under("messages.extra"), extra))
    return items


@dataclass
class InboundFields:
    """The columns an inbound message fills, derived from its type-specific object."""

    message_type: str
    content: str | None = None
    media_id: str | None = None
    media_url: str | None = None
    media_mime_type: str | None = None
    media_filename: str | None = None
    media_sha256: str | None = None
    context_message_id: str | None = None


def describe_inbound(message: JsonObject) -> InboundFields:
    """Content, media and reply context of an inbound message of any type."""
    kind = str(message.get("type") or "unknown")
    fields = InboundFields(message_type=kind)
    obj = as_dict(message.get(kind))
    context = as_dict(message.get("context"))
    if context.get("id"):
        fields.context_message_id = str(context["id"])
    if kind == "text":
        fields.content = _str(obj.get("body"))
    elif kind in MEDIA_TYPES:
        fields.media_id = _str(obj.get("id"))
        fields.media_url = _str(obj.get("url") or obj.get("link"))
        fields.media_mime_type = _str(obj.get("mime_type"))
        fields.media_filename = _str(obj.get("filename"))
        fields.media_sha256 = _str(obj.get("sha256"))
        fields.content = _str(obj.get("caption"))
    elif kind == "location":
        fields.content = _str(obj.get("name") or obj.get("address")) or \
            (f"{obj.get('latitude')},{obj.get('longitude')}" if "latitude" in obj else None)
    elif kind == "contacts":
        names = [str(as_dict(as_dict(card).get("name")).get("formatted_name") or "")
                 for card in as_list(message.get("contacts"))]
        fields.content = ", ".join(n for n in names if n) or None
    elif kind == "button":
        fields.content = _str(obj.get("text") or obj.get("payload"))
    elif kind == "interactive":
        reply = as_dict(obj.get(str(obj.get("type") or "")))
        fields.content = _str(reply.get("title") or reply.get("body") or reply.get("response_json"))
    elif kind == "reaction":
        fields.content = _str(obj.get("emoji"))
        fields.context_message_id = _str(obj.get("message_id")) or fields.context_message_id
    elif kind == "order":
        fields.content = _str(obj.get("text"))
    elif kind == "system":
        fields.content = _str(obj.get("body"))
    return fields


def message_timestamp(message: JsonObject) -> datetime:
    """The message's Unix ``timestamp`` (seconds, as a string), or now if absent/garbled."""
    try:
        return datetime.fromtimestamp(int(str(message.get("timestamp"))), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def status_timestamp(status: JsonObject) -> datetime | None:
    """A status's Unix ``timestamp`` (Meta's time for it), or None if absent or garbled."""
    try:
        return datetime.fromtimestamp(int(str(status["timestamp"])), UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


def as_dict(value: JsonValue) -> JsonObject:
    """``value`` if it is a JSON object, else an empty one (webhooks may omit or garble parts)."""
    return value if isinstance(value, dict) else {}


def as_list(value: JsonValue) -> list[JsonValue]:
    """``value`` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def _str(value: JsonValue) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None
