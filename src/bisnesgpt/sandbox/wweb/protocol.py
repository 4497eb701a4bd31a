"""The sandbox WhatsApp-Web network's wire protocol (JSON frames over one WebSocket).

Client (the ``sandbox`` driver in a wwebjs process) -> server::

    hello        {session, client:{process,pid,host,holder}, auth:{deviceId,secret}|null, pairPhone}
    pair_phone   {phone}                          ask for a pairing code instead of the QR
    send         {ref, message:{id,to,kind,text,media,targetId,replyTo,location,previewUrl,mentions,forwarded,
                  contacts:[{name,vcard}], poll:{name,options,selectableCount},
                  status:{mediaKind,backgroundColor,font,recipients}}}   (kind status: to status@broadcast)
    group        {ref, op, ...}                   a group operation (see ``groups.py``): list, info,
                                                  create, participants, update, invite, join, leave
    check        {ref, numbers:[digits]}          which numbers are on WhatsApp (answered by check_result)
    presence     {chat, state: composing|recording|paused}  "typing…" / "recording audio…" in the chat, or no longer
    read         {chat, ids:[...]}                read receipts (blue ticks) for messages received in the chat
    receipt      {ids:[...]}                      inbound messages stored (stop redelivering)
    ack_received {acks:[{id,level}]}              delivery acks applied (stop replaying)
    logout       {}                               unlink this device
    ping         {n}

Server -> client::

    welcome      {keepalive:{interval,timeout}}
    qr           {code}                            rotates while nobody scans
    pairing_code {code, phone}
    pair_success {auth:{deviceId,secret}, phone, pushName}   a scan (or code entry) paired us
    authenticated{phone, deviceId}                 stored credentials accepted
    ready        {phone, pushName}
    send_result  {ref, id, timestamp, duplicate} | {ref, error:{code,message}}
    group_result {ref, result} | {ref, error:{code,message}}
    check_result {ref, result:{numbers:{digits: bool}}}
    ack          {id, level: server|device|read, timestamp}   (timestamp: when; none when replayed)
    message      {message:{id,from,fromAlt?,chat,timestamp,type,text,media,quotedId,pushName,participantLid,mentions}}
                 a LID-addressed contact: from and chat are its <digits>@lid, fromAlt its number when revealed;
                 type contacts {contacts:[{name,vcard}]}, location {location}, poll_vote {pollId,
                 selected:[option names], participantLid?};
                 type group_participants {group, change, participants, by} and
                 group_updated {group, changes, by} are group notifications (confirmed by receipt too)
    fault        {fault: slow_sends|memory_growth|freeze|clear, ...}   acted on inside the driver
    disconnect   {reason}                          then the socket closes
    logged_out   {reason}                          credentials are void; then the socket closes
    pong         {n}

Message ids are chosen by the sender like WhatsApp Web's (``3EB0`` + hex); the sandbox
driver derives them from our message id, so a resend after a crash carries the same id and
the network records it as a duplicate instead of delivering it twice.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, NotRequired, TypeAlias, TypedDict

from bisnesgpt.core.jsontypes import JsonObject, JsonValue

AckLevel = Literal["server", "device", "read"]

WS_PATH = "/ws/chat"
ACK_LEVELS: tuple[AckLevel, ...] = ("server", "device", "read")
ACK_RANK = {"none": 0, "server": 1, "device": 2, "read": 3}
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
SEND_KINDS = ("text", *MEDIA_KINDS, "location", "contacts", "poll", "status", "reaction", "edit", "delete")
STATUS_CHAT = "status@broadcast"
# What a contact can send to a session (``poll_vote``: a vote on a poll the session sent).
INBOUND_KINDS = ("text", *MEDIA_KINDS, "location", "contacts", "poll_vote")
POLL_VOTE = "poll_vote"
# WhatsApp's own limits: 16 MB for photos, videos, voice; 100 MB (2 GB nowadays) for documents.
MEDIA_LIMITS = {"image": 16 << 20, "video": 16 << 20, "audio": 16 << 20, "sticker": 1 << 20, "document": 100 << 20}

CHAT_ID = re.compile(r"^(\d{5,20})@c\.us$|^[\d-]{5,40}@g\.us$")

# Error codes a send_result may carry.
NOT_ON_WHATSAPP = "not-on-whatsapp"
MEDIA_MISSING = "media-missing"
MEDIA_TOO_LARGE = "media-too-large"
BAD_REQUEST = "bad-request"
NOT_READY = "not-ready"
NOT_IN_GROUP = "not-in-group"
NOT_GROUP_ADMIN = "not-group-admin"
GROUP_NOT_FOUND = "group-not-found"
INVITE_INVALID = "invite-invalid"
# The kinds of the notifications a group's members get.
GROUP_PARTICIPANTS = "group_participants"
GROUP_UPDATED = "group_updated"
GROUP_NOTIFICATIONS = (GROUP_PARTICIPANTS, GROUP_UPDATED)
INVITE_PREFIX = "https://chat.whatsapp.com/"


def wa_message_id(client_id: str) -> str:
    """The WhatsApp Web style id (``3EB0`` + 18 hex digits) for one of our message ids."""
    return "3EB0" + hashlib.sha256(client_id.encode("utf-8")).hexdigest()[:18].upper()


def lid_of(number: str) -> str:
    """The sandbox's LID for a number (stable, like WhatsApp's per-account privacy id): ``<15 digits>@lid``."""
    return str(int(hashlib.sha256(f"lid:{number}".encode()).hexdigest()[:15], 16))[:15] + "@lid"


def session_label(company_id: str, phone_index: int) -> str:
    """The network's name for a phone's session: ``<company>:<phone index>``."""
    return f"{company_id}:{phone_index}"


# --- server -> client frames ------------------------------------------------------------------------


class Keepalive(TypedDict):
    """How often the client pings, and how long it waits for a pong before it gives up."""

    interval: float
    timeout: float


class Welcome(TypedDict):
    """The first frame on every socket."""

    type: Literal["welcome"]
    keepalive: Keepalive


class QrFrame(TypedDict):
    """A QR code to show (rotates while nobody scans it)."""

    type: Literal["qr"]
    code: str


class PairingCodeFrame(TypedDict):
    """The code to enter on the phone instead of scanning."""

    type: Literal["pairing_code"]
    code: str
    phone: str


class DeviceAuth(TypedDict):
    """The credentials a linked device resumes with."""

    deviceId: str
    secret: str


class PairSuccess(TypedDict):
    """A scan (or code entry) linked the device: keep these credentials."""

    type: Literal["pair_success"]
    auth: DeviceAuth
    phone: str
    pushName: str


class Authenticated(TypedDict):
    """Stored credentials were accepted."""

    type: Literal["authenticated"]
    phone: str
    deviceId: str


class Ready(TypedDict):
    """The session may send and will receive."""

    type: Literal["ready"]
    phone: str | None
    pushName: str | None


class SendError(TypedDict):
    """Why a send was refused (``code``: one of the error codes above)."""

    code: str
    message: str


class SendRefused(TypedDict):
    """A ``send_result`` for a refused send."""

    type: Literal["send_result"]
    ref: JsonValue
    error: SendError


class SendAccepted(TypedDict):
    """A ``send_result`` for an accepted send (``duplicate``: the id was already recorded)."""

    type: Literal["send_result"]
    ref: JsonValue
    id: str
    timestamp: float
    duplicate: bool


class AckFrame(TypedDict):
    """A sent message reached the server, the device, or was read."""

    type: Literal["ack"]
    id: str
    level: AckLevel
    timestamp: NotRequired[float]  # when it happened (Unix seconds); a replayed ack has none


class MessageFrame(TypedDict):
    """An inbound message (``{id, chat, timestamp, type}`` plus its recorded content)."""

    type: Literal["message"]
    message: JsonObject


class Kick(TypedDict):
    """Why the network closes the socket: a disconnect, or credentials voided (``logged_out``)."""

    type: Literal["disconnect", "logged_out"]
    reason: str


class Pong(TypedDict):
    """The answer to a ping, echoing its ``n``."""

    type: Literal["pong"]
    n: JsonValue


class ErrorFrame(TypedDict):
    """A frame the network could not act on."""

    type: Literal["error"]
    message: str


# A ``fault`` frame carries the fault's own parameters next to ``type`` and ``fault``: a plain object.
ServerFrame: TypeAlias = ("Welcome | QrFrame | PairingCodeFrame | PairSuccess | Authenticated | Ready | SendRefused"
                          " | SendAccepted | AckFrame | MessageFrame | Kick | Pong | ErrorFrame | JsonObject")


def fault_frame(fault: str, params: JsonObject) -> JsonObject:
    """The ``fault`` frame for a fault the driver acts out, with that fault's parameters."""
    return {"type": "fault", "fault": fault, **params}
