"""The driver interface: what a WhatsApp Web implementation offers the session manager.

A driver opens one ``DriverSession`` per phone. The session reports what happens through
events pushed into an ``EventSink`` (QR, pairing code, authenticated, ready, disconnected,
logged out, inbound message, delivery ack) and accepts ``OutgoingMessage``s. Drivers know
nothing about the database schema, queues or tenants: the manager owns the lifecycle, the
driver only speaks to WhatsApp (or to the sandbox network that stands in for it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bisnesgpt.core.errors import BisnesgptError

LEASE_PREFIX = "wwebjs:session:"


@dataclass(frozen=True, order=True)
class SessionKey:
    """One phone's WhatsApp Web session: (company, phone index)."""

    company_id: str
    phone_index: int

    def __str__(self) -> str:
        return f"{self.company_id}:{self.phone_index}"

    @property
    def lease_name(self) -> str:
        return f"{LEASE_PREFIX}{self.company_id}:{self.phone_index}"

    @classmethod
    def from_lease_name(cls, name: str) -> SessionKey | None:
        if not name.startswith(LEASE_PREFIX):
            return None
        try:
            return cls.parse(name[len(LEASE_PREFIX):])
        except ValueError:
            return None

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        company, _, index = text.rpartition(":")
        if not company or not index.isdigit():
            raise ValueError(f"not a session key: {text!r}")
        return cls(company, int(index))


# --- events (driver -> manager) ----------------------------------------------------------


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

    auth_state: dict[str, Any]
    phone_number: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class Ready:
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
    kind: str  # image | video | audio | document | sticker
    mime_type: str | None = None
    filename: str | None = None
    size: int | None = None
    sha256: str | None = None
    url: str | None = None
    caption: str | None = None


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
    raw: dict[str, Any] = field(default_factory=dict)
    confirm: Callable[[], Awaitable[None]] | None = field(default=None, compare=False, repr=False)


AckLevel = Literal["server", "device", "read", "played"]


@dataclass(frozen=True)
class DeliveryAck:
    """A receipt for a message we sent: server (sent), device (delivered), read."""

    message_id: str
    level: AckLevel
    confirm: Callable[[], Awaitable[None]] | None = field(default=None, compare=False, repr=False)


SessionEvent = QrCode | PairingCode | Authenticated | Ready | Disconnected | LoggedOut | InboundMessage | DeliveryAck
EventSink = Callable[[SessionEvent], None]


# --- outgoing messages (manager -> driver) -----------------------------------------------


@dataclass(frozen=True)
class MediaSource:
    """Media by URL (downloaded by the driver, size-limited) or by bytes."""

    url: str | None = None
    data: bytes | None = None
    mime_type: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """One thing to send to ``to`` (``<digits>@c.us`` or ``<id>@g.us``).

    ``kind`` text: ``text``; image/video/audio/document/sticker: ``media`` (+ ``text`` as
    caption); location: ``location``; reaction/edit/delete: ``target_id`` (+ ``text`` as the
    emoji or the new body). ``reply_to`` quotes a message (a reply). ``client_id`` is our
    message id: drivers that can choose the WhatsApp message id derive it from this, so a
    resend after a crash is recognised as the same message.
    """

    kind: Literal["text", "image", "video", "audio", "document", "sticker", "location",
                  "reaction", "edit", "delete"]
    to: str
    client_id: str
    text: str | None = None
    media: MediaSource | None = None
    target_id: str | None = None
    reply_to: str | None = None
    location: dict[str, Any] | None = None
    preview_url: bool = False


@dataclass(frozen=True)
class SentMessage:
    id: str
    timestamp: float
    duplicate: bool = False


# --- errors ------------------------------------------------------------------------------


class DriverError(BisnesgptError):
    """Something the driver could not do; ``retryable`` says whether trying later may work.

    ``code`` and ``summary`` are what a message that fails this way records as its error
    code and title.
    """

    summary = "WhatsApp Web driver error"
    retryable = True
    code = "DRIVER_ERROR"


class DriverConnectError(DriverError):
    """Could not connect (network, WhatsApp unreachable, sandbox server down)."""

    summary = "Cannot reach WhatsApp Web"
    code = "CONNECT_FAILED"


class NotConnected(DriverError):
    """The session has no live connection right now."""

    summary = "Session not connected"
    code = "SESSION_NOT_CONNECTED"


class SendTimeout(DriverError):
    """WhatsApp did not acknowledge a send in time."""

    summary = "No answer to a send in time"
    code = "SEND_TIMEOUT"


class SendRejected(DriverError):
    """WhatsApp refused the message for good (bad recipient, media too large, ...)."""

    summary = "Message rejected"
    retryable = False

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code


class PairingUnavailable(DriverError):
    """A pairing code can only be requested while the session waits to be paired."""

    summary = "Pairing not possible now"
    retryable = False
    code = "PAIRING_UNAVAILABLE"


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


class WebDriver(Protocol):
    """A WhatsApp Web implementation (one per process)."""

    name: str

    async def open(self) -> None:
        """Process-level setup (e.g. the session store schema)."""

    def session(self, key: SessionKey, sink: EventSink, auth_state: dict[str, Any] | None) -> DriverSession:
        """A new, not yet started session; ``auth_state`` from a previous Authenticated event."""

    async def close(self) -> None:
        """Release process-level resources (sessions are stopped by the manager first)."""
