"""The sandbox driver's side of the sandbox network's protocol: the frames it sends, and reading those it gets.

The frames are described in ``bisnesgpt.sandbox.wweb.protocol``. What the driver sends is
typed here frame by frame; what it receives is a JSON object read member by member (the
network is another process: a member may be missing or of another type, and is then
treated as absent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypedDict

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.engines.wwebjs.driver import (
    AuthState,
    Confirm,
    ContactCard,
    GroupInfo,
    GroupParticipant,
    GroupRole,
    Location,
    MediaDownload,
    OutgoingKind,
    OutgoingMessage,
    ParticipantOutcome,
    ParticipantResult,
    SentMessage,
    TypingState,
)
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, GroupRefused, NotConnected, SendRejected
from bisnesgpt.engines.wwebjs.driver_events import (
    AckLevel,
    GroupChange,
    GroupEvent,
    GroupParticipantsChanged,
    GroupUpdated,
    InboundMedia,
    InboundMessage,
    PollVote,
)
from bisnesgpt.sandbox.wweb import protocol as p

# The network's send refusals that are final, and the codes the failed message records.
SEND_ERRORS = {
    p.NOT_ON_WHATSAPP: "RECIPIENT_NOT_ON_WHATSAPP",
    p.MEDIA_TOO_LARGE: "MEDIA_TOO_LARGE",
    p.BAD_REQUEST: "INVALID_PAYLOAD",
    p.NOT_IN_GROUP: "NOT_IN_GROUP",
    p.NOT_GROUP_ADMIN: "NOT_GROUP_ADMIN",
}
# The network's group refusals, and the codes of the ``GroupRefused`` they become.
GROUP_ERRORS = {
    p.GROUP_NOT_FOUND: "GROUP_NOT_FOUND",
    p.NOT_IN_GROUP: "NOT_IN_GROUP",
    p.NOT_GROUP_ADMIN: "NOT_GROUP_ADMIN",
    p.INVITE_INVALID: "INVITE_INVALID",
    p.BAD_REQUEST: "BAD_GROUP_REQUEST",
}
ROLES: tuple[GroupRole, ...] = ("member", "admin", "superadmin")
OUTCOMES: tuple[ParticipantOutcome, ...] = ("added", "removed", "promoted", "demoted", "not_on_whatsapp",
                                            "privacy_blocked", "already_in_group", "not_in_group", "failed")
CHANGES: tuple[GroupChange, ...] = ("joined", "left", "promoted", "demoted")

# --- client -> server --------------------------------------------------------------------------


class ClientInfo(TypedDict):
    """Who is connecting (shown by the network, used by its chaos tooling to find the process)."""

    process: str
    pid: int
    host: str
    holder: str


class HelloFrame(TypedDict):
    """Opens a session: resume with ``auth``, or pair (by QR, or by code for ``pairPhone``)."""

    type: Literal["hello"]
    session: str
    client: ClientInfo
    auth: AuthState | None
    pairPhone: str | None


class PairPhoneFrame(TypedDict):
    """Ask for a pairing code for ``phone`` instead of the QR."""

    type: Literal["pair_phone"]
    phone: str


class UploadedMedia(TypedDict):
    """Media uploaded over HTTP first, referenced by its handle in a send."""

    handle: JsonValue
    sha256: JsonValue
    size: JsonValue
    mime: str
    filename: str


class WireCard(TypedDict):
    """A contact card on the wire."""

    name: str
    vcard: str


class WirePoll(TypedDict):
    """A poll on the wire."""

    name: str
    options: list[str]
    selectableCount: int


class WireStatus(TypedDict):
    """A status post on the wire (``recipients`` empty: all contacts)."""

    mediaKind: str
    backgroundColor: str | None
    font: int | None
    recipients: list[str]


class WireMessage(TypedDict, total=False):
    """A message to send; members without a value are left out."""

    id: str
    to: str
    kind: OutgoingKind
    text: str
    targetId: str
    replyTo: str
    location: Location
    previewUrl: Literal[True]
    forwarded: Literal[True]
    media: UploadedMedia
    mentions: list[str]
    contacts: list[WireCard]
    poll: WirePoll
    status: WireStatus


class SendFrame(TypedDict):
    """Send ``message``; the answer is a ``send_result`` with the same ``ref``."""

    type: Literal["send"]
    ref: int
    message: WireMessage


class PresenceFrame(TypedDict):
    """Show (``composing``) or stop showing (``paused``) "typing…" in a chat."""

    type: Literal["presence"]
    chat: str
    state: TypingState


class ReadFrame(TypedDict):
    """Read receipts for inbound messages of a chat (blue ticks at the sender's)."""

    type: Literal["read"]
    chat: str
    ids: list[str]


class GroupFrame(TypedDict, total=False):
    """A group operation (``op``), or a ``check`` of ``numbers``; answered by a ``group_result``
    (``check_result``) with the same ``ref``."""

    type: Literal["group", "check"]
    numbers: list[str]
    ref: int
    op: Literal["list", "info", "create", "participants", "update", "invite", "join", "leave", "picture"]
    group: str
    media: UploadedMedia  # picture (set): the uploaded image
    subject: str
    participants: list[str]
    action: str
    changes: JsonObject
    revoke: bool
    invite: str


class ReceiptFrame(TypedDict):
    """Inbound messages stored: the network stops redelivering them."""

    type: Literal["receipt"]
    ids: list[str]


class AckReceived(TypedDict):
    """One delivery ack that was applied (its level as the network named it)."""

    id: str
    level: str


class AckReceivedFrame(TypedDict):
    """Delivery acks applied: the network stops replaying them."""

    type: Literal["ack_received"]
    acks: list[AckReceived]


class LogoutFrame(TypedDict):
    """Unlink this device."""

    type: Literal["logout"]


class PingFrame(TypedDict):
    """Keepalive; answered by a ``pong``."""

    type: Literal["ping"]
    n: int


ClientFrame = (HelloFrame | PairPhoneFrame | SendFrame | GroupFrame | PresenceFrame | ReadFrame | ReceiptFrame
               | AckReceivedFrame | LogoutFrame | PingFrame)


def wire_message(message: OutgoingMessage, media: UploadedMedia | None) -> WireMessage:
    """The ``send`` frame's message for ``message`` (its id derived from our message id)."""
    wire = WireMessage(id=p.wa_message_id(message.client_id), to=message.to, kind=message.kind)
    if message.text is not None:
        wire["text"] = message.text
    if message.target_id is not None:
        wire["targetId"] = message.target_id
    if message.reply_to is not None:
        wire["replyTo"] = message.reply_to
    if message.location is not None:
        wire["location"] = message.location
    if message.preview_url:
        wire["previewUrl"] = True
    if message.forwarded:
        wire["forwarded"] = True
    if media is not None:
        wire["media"] = media
    if message.mentions:
        wire["mentions"] = list(message.mentions)
    if message.contacts:
        wire["contacts"] = [WireCard(name=c.name, vcard=c.vcard) for c in message.contacts]
    if message.status is not None:
        post = message.status
        wire["status"] = WireStatus(mediaKind=post.media_kind, backgroundColor=post.background_color, font=post.font,
                                    recipients=list(post.recipients))
    if message.poll is not None:
        wire["poll"] = WirePoll(name=message.poll.name, options=list(message.poll.options),
                                selectableCount=message.poll.selectable_count)
    return wire


# --- server -> client --------------------------------------------------------------------------


def text(frame: JsonObject, name: str) -> str | None:
    """A string member of a frame (None when absent or not a string)."""
    value = frame.get(name)
    return value if isinstance(value, str) else None


def number(frame: JsonObject, name: str) -> float | None:
    """A numeric member of a frame (None when absent or not a number)."""
    value = frame.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def member(frame: JsonObject, name: str) -> JsonObject:
    """An object member of a frame (empty when absent or not an object)."""
    value = frame.get(name)
    return value if isinstance(value, dict) else {}


ACK_LEVELS: tuple[AckLevel, ...] = ("server", "device", "read", "played")


def ack_time(frame: JsonObject) -> float | None:
    """When an ``ack`` frame's receipt happened (Unix seconds); None for a replayed one, which has no time."""
    stamp = frame.get("timestamp")
    return float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None


def ack_level(frame: JsonObject) -> AckLevel | None:
    """The level of an ``ack`` frame; None for a level this driver does not know."""
    level = frame.get("level")
    return next((known for known in ACK_LEVELS if known == level), None)


def inbound_message(message: JsonObject, confirm: Confirm,
                    download_for: Callable[[str], MediaDownload] | None = None) -> InboundMessage:
    """A ``message`` frame's message as the manager's ``InboundMessage`` (``download_for``: a media URL's fetcher)."""
    kind = text(message, "type") or "text"
    media = None
    if kind in p.MEDIA_KINDS:
        body = member(message, "media")
        size = number(body, "size")
        media = InboundMedia(kind, mime_type=text(body, "mime"), filename=text(body, "filename"),
                             size=int(size) if size is not None else None, sha256=text(body, "sha256"),
                             url=text(body, "url"), caption=text(message, "text"),
                             view_once=body.get("viewOnce") is True, animated=body.get("animated") is True,
                             download=download_for(url) if download_for and (url := text(body, "url")) else None)
    # A LID-addressed sender: ``from`` is the LID, ``fromAlt`` the number when the network reveals it.
    sender = text(message, "from") or ""
    lid = text(message, "participantLid") or (sender if sender.endswith("@lid") else None)
    author = text(message, "fromAlt") or sender
    return InboundMessage(
        id=str(message["id"]), chat_id=text(message, "chat") or f"{sender}@c.us", sender=author,
        timestamp=number(message, "timestamp") or time.time(), type=kind,
        text=text(message, "text") if media is None else None, media=media, quoted_id=text(message, "quotedId"),
        push_name=text(message, "pushName"), raw=message, confirm=confirm, sender_lid=lid,
        mentions=strings(message, "mentions"), location=_location(message) if kind == "location" else None,
        contacts=_cards(message),
    )


def strings(frame: JsonObject, name: str) -> tuple[str, ...]:
    """A list-of-strings member (non-strings left out; empty when absent)."""
    value = frame.get(name)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def group_event(message: JsonObject, confirm: Confirm) -> GroupEvent | None:
    """A group notification (``group_participants``/``group_updated`` message) as the driver's event."""
    kind, group_id = text(message, "type"), text(message, "group") or text(message, "chat") or ""
    stamp = number(message, "timestamp") or time.time()
    by = text(message, "by") or None
    if kind == p.GROUP_PARTICIPANTS:
        change = next((c for c in CHANGES if c == message.get("change")), None)
        if change is None:
            return None
        return GroupParticipantsChanged(str(message["id"]), group_id, change, strings(message, "participants"), by,
                                        stamp, confirm)
    if kind == p.GROUP_UPDATED:
        return GroupUpdated(str(message["id"]), group_id, dict(member(message, "changes")), by, stamp, confirm)
    return None


def poll_vote(message: JsonObject, confirm: Confirm) -> PollVote:
    """A ``poll_vote`` message: who voted on which of our polls, and their whole current choice."""
    return PollVote(id=str(message["id"]), poll_id=text(message, "pollId") or "",
                    chat_id=text(message, "chat") or f"{message.get('from')}@c.us", voter=text(message, "from") or "",
                    timestamp=number(message, "timestamp") or time.time(), selected=strings(message, "selected"),
                    voter_lid=text(message, "participantLid"), confirm=confirm)


def _cards(message: JsonObject) -> tuple[ContactCard, ...]:
    found = message.get("contacts")
    return tuple(ContactCard(text(c, "name") or "", text(c, "vcard") or "")
                 for c in (found if isinstance(found, list) else []) if isinstance(c, dict))


def _location(message: JsonObject) -> Location | None:
    body = member(message, "location")
    latitude, longitude = number(body, "latitude"), number(body, "longitude")
    if latitude is None or longitude is None:
        return None
    return Location(latitude=latitude, longitude=longitude, name=text(body, "name"), address=text(body, "address"))


def group_info(view: JsonObject) -> GroupInfo:
    """A group as the network shows it."""
    members = view.get("participants")
    participants = tuple(
        GroupParticipant(str(m.get("number")), next((r for r in ROLES if r == m.get("role")), "member"),
                         text(m, "lid"))
        for m in (members if isinstance(members, list) else []) if isinstance(m, dict))
    return GroupInfo(id=str(view.get("id")), subject=text(view, "subject") or "", description=text(view, "description"),
                     owner=text(view, "owner"), created_at=number(view, "createdAt"), participants=participants,
                     announce=bool(view.get("announce")), locked=bool(view.get("locked")),
                     is_admin=bool(view.get("isAdmin")), invite_link=text(view, "inviteLink"))


def participant_results(result: JsonObject) -> list[ParticipantResult]:
    """The per-number results of a participants operation."""
    found = result.get("participants")
    return [ParticipantResult(str(r.get("number")), next((o for o in OUTCOMES if o == r.get("outcome")), "failed"))
            for r in (found if isinstance(found, list) else []) if isinstance(r, dict)]


def _refusal(result: JsonObject) -> tuple[str, str] | None:
    """A ``*_result``'s ``error`` as (code, message), None without one; a session not ready raises NotConnected."""
    if not result.get("error"):
        return None
    error = member(result, "error")
    code, message = str(error.get("code")), str(error.get("message"))
    if code == p.NOT_READY:
        raise NotConnected(message)
    return code, message


def group_result(result: JsonObject) -> JsonObject:
    """A ``group_result``'s result, or the driver error its ``error`` stands for."""
    if (refusal := _refusal(result)) is not None:
        code, message = refusal
        raise GroupRefused(message, code=GROUP_ERRORS.get(code, "BAD_GROUP_REQUEST"))
    return member(result, "result")


def sent_message(result: JsonObject) -> SentMessage:
    """A ``send_result``: the sent message, or the driver error its ``error`` stands for."""
    if (refusal := _refusal(result)) is not None:
        code, message = refusal
        if code in SEND_ERRORS:
            raise SendRejected(message, code=SEND_ERRORS[code])
        raise DriverError(f"send failed: {message} ({code})")
    return SentMessage(str(result["id"]), number(result, "timestamp") or time.time(), bool(result.get("duplicate")))
