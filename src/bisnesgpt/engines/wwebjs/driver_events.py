"""What a driver session reports to the session manager, pushed into an ``EventSink``.

QR and pairing codes, authenticated, ready, disconnected and logged out (the connection's
life), inbound messages, delivery acks, group notifications and poll votes (each with the
``confirm`` that acknowledges it to WhatsApp once stored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.wwebjs.driver import AuthState, Confirm, ContactCard, Location, MediaDownload


@dataclass(frozen=True)
class QrCode:
    """A new QR code to scan (rotates while nobody scans)."""

    code: str


@dataclass(frozen=True)
class PairingCode:
    """A pairing code for "link with phone number" on the phone."""

    code: str
    phone_number: str


@dataclass(frozen=True)
class Authenticated:
    """Paired or resumed; ``auth_state`` is what the driver needs to resume next time."""

    auth_state: AuthState
    phone_number: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class Ready:
    """Connected and able to send, as the number ``phone_number`` (WhatsApp display name ``push_name``)."""

    phone_number: str | None = None
    push_name: str | None = None


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; the manager decides whether and when to reconnect."""

    reason: str
    # True when the connection never got going (could not reach WhatsApp at all).
    connect_failure: bool = False


@dataclass(frozen=True)
class LoggedOut:
    """The device was unlinked (from the phone, by WhatsApp, or by our logout)."""

    reason: str


@dataclass(frozen=True)
class InboundMedia:
    """The media of an inbound message: what WhatsApp says about the file, and where to fetch it."""

    kind: str  # image | video | audio | document | sticker
    mime_type: str | None = None
    filename: str | None = None
    size: int | None = None
    sha256: str | None = None
    url: str | None = None
    caption: str | None = None
    # View-once media (an image, video or voice note the recipient may open once).
    view_once: bool = False
    # An animated sticker (static ones are False).
    animated: bool = False
    # How this driver gets the bytes (the sandbox network's media server; whatsmeow's
    # download and decryption with the message's media key); None: it cannot.
    download: MediaDownload | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class InboundMessage:
    """A message someone sent to this phone. ``confirm`` is awaited once it is stored."""

    id: str
    chat_id: str  # <digits>@c.us or <id>@g.us
    sender: str  # <digits> of the author
    timestamp: float
    type: str  # text | image | video | audio | document | sticker | location | reaction | unknown
    text: str | None = None
    media: InboundMedia | None = None
    quoted_id: str | None = None
    push_name: str | None = None
    raw: JsonObject = field(default_factory=dict)
    confirm: Confirm | None = field(default=None, compare=False, repr=False)
    # In a group: the author's LID (WhatsApp's privacy id, ``<digits>@lid``) when known.
    sender_lid: str | None = None
    # The numbers the message @-mentions.
    mentions: tuple[str, ...] = ()
    location: Location | None = None  # type location (``live``: a live location's current point)
    contacts: tuple[ContactCard, ...] = ()  # type contacts


AckLevel = Literal["server", "device", "read", "played"]


@dataclass(frozen=True)
class DeliveryAck:
    """A receipt for a message we sent: server (sent), device (delivered), read."""

    message_id: str
    level: AckLevel
    confirm: Confirm | None = field(default=None, compare=False, repr=False)
    at: float | None = None  # WhatsApp's time of the receipt (Unix seconds), when it says


GroupChange = Literal["joined", "left", "promoted", "demoted"]


@dataclass(frozen=True)
class GroupParticipantsChanged:
    """People joined or left a group this phone is in, or became or stopped being admins (``by``: who did it)."""

    id: str  # the notification's id (what the confirm acknowledges)
    group_id: str
    change: GroupChange
    participants: tuple[str, ...]
    by: str | None
    timestamp: float
    confirm: Confirm | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GroupUpdated:
    """A group's subject, description or settings changed (``changes``: the new values only)."""

    id: str
    group_id: str
    changes: JsonObject
    by: str | None
    timestamp: float
    confirm: Confirm | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PollVote:
    """Someone voted on a poll (their whole current choice: an empty one takes the vote back).

    ``selected`` names the options when the driver knows them; WhatsApp itself only says
    their SHA-256 (``selected_hashes``, hex), which the poll's stored options resolve.
    """

    id: str
    poll_id: str
    chat_id: str
    voter: str
    timestamp: float
    selected: tuple[str, ...] = ()
    selected_hashes: tuple[str, ...] = ()
    voter_lid: str | None = None
    confirm: Confirm | None = field(default=None, compare=False, repr=False)


GroupEvent = GroupParticipantsChanged | GroupUpdated
# What a session reports besides messages and receipts, each confirmed once handled.
Notification = GroupParticipantsChanged | GroupUpdated | PollVote
SessionEvent = (QrCode | PairingCode | Authenticated | Ready | Disconnected | LoggedOut | InboundMessage | DeliveryAck
                | GroupParticipantsChanged | GroupUpdated | PollVote)
EventSink = Callable[[SessionEvent], None]
