"""A message as the API understood it (a ``Draft``), and the stored Cloud-API ``payload``.

The payload contract (shared with both engines) is::

    {"messaging_product": "whatsapp", "recipient_type": "individual" | "group",
     "to": "<digits or group id>", "type": T, T: {...},
     "context": {"message_id": "<provider id of the replied-to message>"},   # replies only
     "pacing": {"simulateTyping": bool, "delayMs": int}}                     # WhatsApp Web, when given

``reaction``, ``edit`` and ``delete`` carry ``message_id`` = the *provider* id of their
target; the API resolves our message ids to provider ids before storing (``targets.py``).
``delete`` also carries ``for_everyone`` (default true).
``forward`` (WhatsApp Web) carries the original message: ``{"message_id": "<our id of it>",
"type": T, T: {...}}``, its content as it was stored, settled at accept (``forwards.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.messaging.addressing import Recipient

MediaType = Literal["image", "video", "audio", "document", "sticker"]
# Types that act on an earlier message: their object's ``message_id`` names the target.
TargetedType = Literal["reaction", "edit", "delete"]
MessageType = Literal["text", "location", "contacts", "poll", "status", "interactive", "template", MediaType,
                      TargetedType, "forward"]
MEDIA_TYPES: frozenset[str] = frozenset(get_args(MediaType))
TARGETED_TYPES: frozenset[str] = frozenset(get_args(TargetedType))
MESSAGE_TYPES: frozenset[str] = frozenset(get_args(MessageType))


@dataclass(frozen=True)
class MediaRef:
    """Where a media draft's file comes from (``link`` or an uploaded ``id``), and its file name."""

    link: str | None = None
    id: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class Draft:
    """One message to send, validated but not yet resolved against stored messages.

    ``recipient`` is None only for a targeted type whose chat comes from its target.
    ``target`` is the message a reaction/edit/delete acts on; ``reply_to`` the quoted one
    (both: our messageId or a provider id, as the client gave it).
    """

    type: MessageType
    body: JsonObject | Sequence[JsonValue]  # a list only for ``contacts``
    recipient: Recipient | None
    reply_to: str | None = None
    target: str | None = None
    content: str | None = None
    mime_type: str | None = None
    # The client's request body as given (stored in ``messages.raw`` for audit).
    request: JsonObject = field(default_factory=dict)
    # Per-message pacing hints for WhatsApp-Web phones (``simulateTyping``, ``delayMs``).
    pacing: JsonObject = field(default_factory=dict)
    # A forward: the message (our id or its provider id) whose content is sent again.
    forward_of: str | None = None

    def __post_init__(self) -> None:
        """Refuse an unknown type, and a target on a type that takes none (or none where one is needed)."""
        if self.type not in MESSAGE_TYPES:
            raise ValueError(f"unknown message type {self.type!r}")
        if (self.type in TARGETED_TYPES) != (self.target is not None):
            raise ValueError(f"{self.type} drafts {'need' if self.type in TARGETED_TYPES else 'take no'} target")
        if (self.type == "forward") != (self.forward_of is not None):
            raise ValueError("forward drafts, and only they, name the message they forward")

    @property
    def media(self) -> MediaRef:
        """The file of a media draft (all None for other types)."""
        if self.type not in MEDIA_TYPES or not isinstance(self.body, dict):
            return MediaRef()
        link, media_id, filename = (self.body.get(name) for name in ("link", "id", "filename"))
        return MediaRef(link if isinstance(link, str) else None, media_id if isinstance(media_id, str) else None,
                        filename if isinstance(filename, str) else None)


@dataclass(frozen=True)
class Resolved:
    """A draft with its recipient and provider ids settled: ready to store."""

    draft: Draft
    recipient: Recipient
    target_external_id: str | None
    reply_external_id: str | None

    def payload(self) -> JsonObject:
        """The stored ``messages.payload`` (the contract in the module docstring)."""
        kind = self.draft.type
        body: JsonObject | list[JsonValue] = (dict(self.draft.body) if isinstance(self.draft.body, dict)
                                              else list(self.draft.body))
        if self.target_external_id is not None and isinstance(body, dict):
            body["message_id"] = self.target_external_id
        payload: JsonObject = {
            "messaging_product": "whatsapp",
            "recipient_type": self.recipient.recipient_type,
            "to": self.recipient.to,
            "type": kind,
            kind: body,
        }
        if self.reply_external_id is not None:
            payload["context"] = {"message_id": self.reply_external_id}
        if self.draft.pacing:
            payload["pacing"] = dict(self.draft.pacing)
        return payload

    @property
    def context_message_id(self) -> str | None:
        """Stored in ``messages.context_message_id``: the quoted or the acted-on message."""
        return self.reply_external_id or self.target_external_id


def text_draft(recipient: Recipient, body: str, *, preview_url: bool = False, reply_to: str | None = None,
               request: JsonObject | None = None, mentions: list[str] | None = None) -> Draft:
    """A text message (``preview_url``: let WhatsApp show a link preview; ``mentions``: numbers @-mentioned)."""
    text: JsonObject = {"body": body, "preview_url": preview_url}
    if mentions:
        text["mentions"] = list(dict.fromkeys(m.lstrip("+") for m in mentions))
    return Draft("text", text, recipient, reply_to=reply_to, content=body, request=request or {})


def media_draft(kind: MediaType, recipient: Recipient, *, link: str | None = None, media_id: str | None = None,
                caption: str | None = None, filename: str | None = None, mime_type: str | None = None,
                reply_to: str | None = None, request: JsonObject | None = None) -> Draft:
    """An image/video/audio/document/sticker from a ``link`` (or an uploaded ``media_id``)."""
    if kind not in MEDIA_TYPES:
        raise ValueError(f"not a media type: {kind}")
    body: JsonObject = {"link": link} if link is not None else {"id": media_id}
    if caption:
        body["caption"] = caption
    if filename:
        body["filename"] = filename
    return Draft(kind, body, recipient, reply_to=reply_to, content=caption or None, mime_type=mime_type,
                 request=request or {})


def template_draft(recipient: Recipient, name: str, language: str, components: list[JsonObject] | None, *,
                   reply_to: str | None = None, request: JsonObject | None = None) -> Draft:
    """An approved template by name and language code, with its parameter ``components``."""
    body: JsonObject = {"name": name, "language": {"code": language, "policy": "deterministic"}}
    if components:
        body["components"] = [*components]
    return Draft("template", body, recipient, reply_to=reply_to, content=name, request=request or {})


def reaction_draft(recipient: Recipient | None, target: str, emoji: str, *,
                   request: JsonObject | None = None) -> Draft:
    """A reaction to ``target`` (an empty ``emoji`` removes ours)."""
    return Draft("reaction", {"message_id": target, "emoji": emoji}, recipient, target=target, content=emoji,
                 request=request or {})


def edit_draft(recipient: Recipient | None, target: str, text: str, *, request: JsonObject | None = None) -> Draft:
    """A new text for an earlier text message of ours (``target``)."""
    return Draft("edit", {"message_id": target, "text": {"body": text}}, recipient, target=target, content=text,
                 request=request or {})


def delete_draft(recipient: Recipient | None, target: str, *, for_everyone: bool = True,
                 request: JsonObject | None = None) -> Draft:
    """Delete ``target``: for everyone in the chat, or only on our phone."""
    return Draft("delete", {"message_id": target, "for_everyone": for_everyone}, recipient, target=target,
                 request=request or {})


def forward_draft(recipient: Recipient, message_id: str, *, request: JsonObject | None = None) -> Draft:
    """Forward the company's message ``message_id`` (either direction) to ``recipient``, marked as forwarded."""
    return Draft("forward", {"message_id": message_id}, recipient, forward_of=message_id, request=request or {})
