"""The driver interface: what a WhatsApp Web implementation offers the session manager.

A driver opens one ``DriverSession`` per phone. The session reports what happens through
events pushed into an ``EventSink`` (``driver_events``: QR, pairing code, authenticated, ready,
disconnected, logged out, inbound message, delivery ack) and accepts ``OutgoingMessage``s; it
raises the errors of ``driver_errors``. Drivers know
nothing about the database schema, queues or tenants: the manager owns the lifecycle, the
driver only speaks to WhatsApp (or to the sandbox network that stands in for it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, TypedDict

from bisnesgpt.core.jsontypes import JsonObject

if TYPE_CHECKING:  # the events import this module's types; the interface only names the sink
    from bisnesgpt.engines.wwebjs.driver_events import EventSink

LEASE_PREFIX = "wwebjs:session:"
# What a driver needs to resume a paired session; stored encrypted, meaningful to that driver only.
AuthState: TypeAlias = JsonObject
Confirm: TypeAlias = Callable[[], Awaitable[None]]
# Fetches (and decrypts) an inbound message's media: its bytes in chunks, never all at once.
MediaDownload: TypeAlias = Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True, order=True)
class SessionKey:
    """One phone's WhatsApp Web session: (company, phone index)."""

    company_id: str
    phone_index: int

    def __str__(self) -> str:
        """``company:index``, the form ``parse`` reads back."""
        return f"{self.company_id}:{self.phone_index}"

    @property
    def lease_name(self) -> str:
        """The ``process_leases`` name whose holder drives this session."""
        return f"{LEASE_PREFIX}{self.company_id}:{self.phone_index}"

    @classmethod
    def from_lease_name(cls, name: str) -> SessionKey | None:
        """The session a lease name is about; None for a lease that is not a session's."""
        if not name.startswith(LEASE_PREFIX):
            return None
        try:
            return cls.parse(name[len(LEASE_PREFIX):])
        except ValueError:
            return None

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        """The key written as ``company:index`` (ValueError otherwise)."""
        company, _, index = text.rpartition(":")
        if not company or not index.isdigit():
            raise ValueError(f"not a session key: {text!r}")
        return cls(company, int(index))



@dataclass(frozen=True)
class ContactCard:
    """A contact card: its display name and vCard (``numbers``: the WhatsApp numbers on it)."""

    name: str
    vcard: str
    numbers: tuple[str, ...] = ()


class Location(TypedDict):
    """A location pin to send (the Cloud API's ``location`` object, coordinates as numbers)."""

    latitude: float
    longitude: float
    name: str | None
    address: str | None



# --- outgoing messages (manager -> driver) -----------------------------------------------


@dataclass(frozen=True)
class MediaSource:
    """Media by URL (downloaded by the driver, size-limited), by bytes, or by a gateway media id.

    A ``media_id`` (``med_…``, uploaded with ``POST /api/v1/media``) never reaches a driver:
    the engine replaces it with the stored bytes (``stored_media.py``).
    """

    url: str | None = None
    data: bytes | None = None
    mime_type: str | None = None
    filename: str | None = None
    media_id: str | None = None


@dataclass(frozen=True)
class Poll:
    """A poll to send: the question, 2 to 12 options, how many one may pick (1: one; 0: any number)."""

    name: str
    options: tuple[str, ...]
    selectable_count: int = 1


@dataclass(frozen=True)
class StatusPost:
    """A status (story) post: text on a background colour, or an image or video with a caption.

    ``recipients`` (digits): who sees it; empty: all contacts (as the phone's privacy settings say).
    """

    media_kind: Literal["text", "image", "video"] = "text"
    background_color: str | None = None  # "#RRGGBB"
    font: int | None = None
    recipients: tuple[str, ...] = ()


OutgoingKind = Literal["text", "image", "video", "audio", "document", "sticker", "location", "reaction", "edit",
                       "delete", "contacts", "poll", "status"]


@dataclass(frozen=True)
class OutgoingMessage:
    """One thing to send to ``to`` (``<digits>@c.us`` or ``<id>@g.us``).

    ``kind`` text: ``text``; image/video/audio/document/sticker: ``media`` (+ ``text`` as
    caption); location: ``location``; contacts: ``contacts``; poll: ``poll``;
    reaction/edit/delete: ``target_id`` (+ ``text`` as the
    emoji or the new body). ``reply_to`` quotes a message (a reply). ``client_id`` is our
    message id: drivers that can choose the WhatsApp message id derive it from this, so a
    resend after a crash is recognised as the same message.
    """

    kind: OutgoingKind
    to: str
    client_id: str
    text: str | None = None
    media: MediaSource | None = None
    target_id: str | None = None
    reply_to: str | None = None
    location: Location | None = None
    preview_url: bool = False
    # Numbers (digits) the text @-mentions; WhatsApp shows them as mentions in a group.
    mentions: tuple[str, ...] = ()
    contacts: tuple[ContactCard, ...] = ()  # contacts: one card or several
    poll: Poll | None = None
    status: StatusPost | None = None  # status: to status@broadcast (``text``, or ``media`` with ``text`` as caption)
    # A forward: the original's content (any kind above but reactions, edits, deletes, polls, status posts),
    # shown to the recipient as forwarded.
    forwarded: bool = False


@dataclass(frozen=True)
class SentMessage:
    """What WhatsApp answered to a send: the message's id, its time, and whether it was a resend."""

    id: str
    timestamp: float
    duplicate: bool = False


@dataclass(frozen=True)
class ReadMessage:
    """An inbound message to send a read receipt for: its id, and its author in a group (digits)."""

    id: str
    sender: str | None = None


# --- groups (manager -> driver) -------------------------------------------------------------

TypingState = Literal["composing", "recording", "paused"]
GroupRole = Literal["member", "admin", "superadmin"]
ParticipantAction = Literal["add", "remove", "promote", "demote"]
# What became of one participant of an add/remove/promote/demote.
ParticipantOutcome = Literal["added", "removed", "promoted", "demoted", "not_on_whatsapp", "privacy_blocked",
                             "already_in_group", "not_in_group", "failed"]


@dataclass(frozen=True)
class GroupParticipant:
    """A member of a group: number (digits), LID when known, and role."""

    number: str
    role: GroupRole = "member"
    lid: str | None = None


@dataclass(frozen=True)
class GroupInfo:
    """A group as this phone sees it (``is_admin``: this phone is an admin; ``invite_link`` only then)."""

    id: str  # <id>@g.us
    subject: str
    description: str | None = None
    owner: str | None = None
    created_at: float | None = None
    participants: tuple[GroupParticipant, ...] = ()
    announce: bool = False  # only admins may send
    locked: bool = False  # only admins may change subject, description, picture
    is_admin: bool = False
    invite_link: str | None = None


@dataclass(frozen=True)
class ParticipantResult:
    """What an add/remove/promote/demote did for one number."""

    number: str
    outcome: ParticipantOutcome


@dataclass(frozen=True)
class GroupChanges:
    """What to change about a group (None: leave as it is)."""

    subject: str | None = None
    description: str | None = None
    announce: bool | None = None
    locked: bool | None = None


# --- the interface -------------------------------------------------------------------------


class DriverSession(Protocol):
    """One phone's connection. Created by ``WebDriver.session``, used by one manager task."""

    async def start(self, *, pairing_phone: str | None = None) -> None:
        """Connect (and start pairing if there is no stored auth); raise DriverConnectError."""

    async def request_pairing_code(self, phone_number: str) -> str:
        """Ask for a pairing code instead of a QR; the code also arrives as a PairingCode event."""

    async def send(self, message: OutgoingMessage) -> SentMessage:
        """Send; raise NotConnected, SendTimeout, SendRejected or DriverError."""

    async def logout(self) -> None:
        """Unlink this device from the phone and forget the credentials."""

    async def stop(self) -> None:
        """Disconnect without logging out (the stored auth stays valid)."""

    async def check_numbers(self, numbers: list[str]) -> dict[str, bool]:
        """Whether each number (digits) has a WhatsApp account."""

    async def typing(self, chat_id: str, state: TypingState) -> None:
        """Show "typing…" (``composing``) or "recording audio…" (``recording``) in the chat, or stop (``paused``)."""

    async def mark_read(self, chat_id: str, messages: list[ReadMessage]) -> None:
        """Send read receipts (blue ticks) for inbound messages of the chat."""

    async def groups(self) -> list[GroupInfo]:
        """The groups this phone is in (participants without LIDs; invite links left out)."""

    async def group_info(self, group_id: str) -> GroupInfo:
        """One group (with its invite link if this phone is an admin); GroupRefused GROUP_NOT_FOUND."""

    async def create_group(self, subject: str, participants: list[str]) -> tuple[GroupInfo, list[ParticipantResult]]:
        """Create a group with this phone as its owner; what became of each participant."""

    async def update_participants(self, group_id: str, action: ParticipantAction,
                                  numbers: list[str]) -> list[ParticipantResult]:
        """Add, remove, promote or demote (this phone must be an admin): one result per number."""

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupInfo:
        """Change subject, description, announcement-only or locked info; the group afterwards."""

    async def invite_link(self, group_id: str, *, revoke: bool = False) -> str:
        """The group's invite link (a new one, the old one void, with ``revoke``)."""

    async def join_group(self, invite: str) -> str:
        """Join by invite link (or its code); the group's id."""

    async def leave_group(self, group_id: str) -> None:
        """Leave the group."""

    async def group_picture(self, group_id: str) -> str | None:
        """Where the group's picture can be fetched now (None: it has none)."""

    async def set_group_picture(self, group_id: str, image: MediaSource) -> str:
        """Set the group's picture (a JPEG; admins only when the group is locked); the new picture's id."""

    async def remove_group_picture(self, group_id: str) -> None:
        """Remove the group's picture."""


class WebDriver(Protocol):
    """A WhatsApp Web implementation (one per process)."""

    name: str

    async def open(self) -> None:
        """Process-level setup (e.g. the session store schema)."""

    def session(self, key: SessionKey, sink: EventSink, auth_state: AuthState | None) -> DriverSession:
        """A new, not yet started session; ``auth_state`` from a previous Authenticated event."""

    async def close(self) -> None:
        """Release process-level resources (sessions are stopped by the manager first)."""
