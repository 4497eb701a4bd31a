"""Message routing on the sandbox network: frames from a ready client, and messages injected for it.

A send is checked as WhatsApp would (recipient, media, target of a reaction or edit),
recorded (a known id is a duplicate, counted but not delivered again), answered, and then
acked server → device → read after the configured delays. Acks and inbound messages are
replayed after a reconnect until the client confirms them (``ack_received``, ``receipt``);
inbound messages wait while the device is offline. Numbers ending in 404 are not on
WhatsApp (``config.not_on_whatsapp``).
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from typing import TypedDict

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.sandbox.jsonvalues import as_strings
from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.config import not_on_whatsapp
from bisnesgpt.sandbox.wweb.connection import Connection
from bisnesgpt.sandbox.wweb.groups import GroupFault, Groups
from bisnesgpt.sandbox.wweb.records import ChangeKind
from bisnesgpt.sandbox.wweb.sessions import SessionLinker
from bisnesgpt.sandbox.wweb.switchboard import NetworkError, Switchboard

CHANGE_KINDS: dict[str, ChangeKind] = {"reaction": "reaction", "edit": "edit", "delete": "delete"}
# What of a sent message the network records (and the admin API shows as its body).
# What WhatsApp sends as view-once (``media.viewOnce``); only stickers are ``media.animated``.
VIEW_ONCE_KINDS = ("image", "video", "audio")
RECORDED_FIELDS = ("text", "media", "targetId", "replyTo", "location", "previewUrl", "mentions", "contacts", "poll",
                   "status", "forwarded")
# What WhatsApp lets one forward: a message's content (not a change to another message, a poll or a status post).
FORWARDABLE_KINDS = ("text", "location", "contacts", *p.MEDIA_KINDS)
def _content_refusal(kind: str, message: JsonObject) -> tuple[str, str] | None:
    """What WhatsApp refuses in a contacts message or a poll (no cards; too few, too many or repeated options)."""
    if kind == "contacts":
        cards = message.get("contacts")
        if not isinstance(cards, list) or not cards or not all(isinstance(c, dict) and c.get("vcard") for c in cards):
            return p.BAD_REQUEST, "contacts needs at least one card with a vcard"
    if kind == "status" and not message.get("text") and not message.get("media"):
        return p.BAD_REQUEST, "a status post needs text or media"
    if kind == "poll":
        poll = message.get("poll")
        options = as_strings(poll.get("options") or []) if isinstance(poll, dict) else []
        count = poll.get("selectableCount") if isinstance(poll, dict) else None
        if not 2 <= len(options) <= 12 or len(set(options)) != len(options) or not isinstance(count, int) \
                or not 0 <= count <= len(options):
            return p.BAD_REQUEST, "a poll needs 2 to 12 distinct options and a selectableCount of 0 to their number"
    return None


class InjectedInbound(TypedDict):
    """The answer of an inbound injection (``pushed``: the session was ready and got it now)."""

    id: str
    session: str
    pushed: bool


@dataclass(eq=False)
class Routing:
    """Handles a client's frames after its hello, and delivers injected inbound messages."""

    board: Switchboard
    linker: SessionLinker
    groups: Groups

    async def frame(self, conn: Connection, frame: JsonObject) -> None:
        """One frame from the client (a hung network reads it only once it recovers)."""
        kind = frame.get("type")
        if conn.session is not None:
            await self.board.wait_unhung(conn.session)
        if not conn.open:
            return
        records = self.board.records
        if kind == "ping":
            await conn.push({"type": "pong", "n": frame.get("n")})
        elif kind == "pair_phone":
            await self.linker.pairing_code(conn, str(frame.get("phone") or ""))
        elif kind == "send":
            await self._send_after_latency(conn, frame)
        elif kind == "group":
            await self._group(conn, frame)
        elif kind == "check":
            numbers = [n for n in as_strings(frame.get("numbers") or []) if n]
            listed = self.board.config.not_on_whatsapp
            await conn.push({"type": "check_result", "ref": frame.get("ref"),
                             "result": {"numbers": {n: not not_on_whatsapp(n, listed) for n in numbers}}})
        elif kind == "presence" and conn.session:
            records.record_presence(conn.session, str(frame.get("chat") or ""), str(frame.get("state") or ""))
        elif kind == "read" and conn.session:
            records.record_reads(conn.session, str(frame.get("chat") or ""),
                                 [i for i in as_strings(frame.get("ids") or []) if i])
        elif kind in ("receipt", "ack_received") and conn.session:
            self._confirmed(conn.session, frame)
        elif kind == "logout" and conn.session:
            records.log_out_device(conn.session, "logged out by the client")
            await conn.kick("logged_out", "logged out by the client")
        else:
            await conn.push({"type": "error", "message": f"unexpected frame {kind!r}"})

    async def _send_after_latency(self, conn: Connection, frame: JsonObject) -> None:
        config = self.board.config
        delay_ms = config.latency_ms + (random.uniform(0, config.latency_jitter_ms)  # noqa: S311
                                        if config.latency_jitter_ms > 0 else 0)
        if delay_ms > 0:
            self.board.later(delay_ms, self._send(conn, frame))  # the path's latency: later frames may overtake
        else:
            await self._send(conn, frame)

    async def _send(self, conn: Connection, frame: JsonObject) -> None:
        ref = frame.get("ref")
        raw = frame.get("message")
        message: JsonObject = raw if isinstance(raw, dict) else {}
        if conn.state != "ready" or conn.session is None:
            await self._refuse(conn, ref, p.NOT_READY, f"connection is {conn.state}")
            return
        refusal = self._refusal(conn.session, message)
        if refusal is not None:
            await self._refuse(conn, ref, *refusal)
            return
        kind, to = str(message.get("kind") or ""), str(message.get("to") or "")
        message_id = str(message.get("id") or ("3EB0" + secrets.token_hex(9).upper()))
        body: JsonObject = {k: message.get(k) for k in RECORDED_FIELDS if message.get(k) is not None}
        new = self.board.records.record_outbound(conn.session, message_id, to, kind, body, conn.id)
        change = CHANGE_KINDS.get(kind)
        if new and change is not None:
            self.board.records.annotate(conn.session, str(message["targetId"]), change, message_id,
                                        message.get("text"))
        result: p.SendAccepted = {"type": "send_result", "ref": ref, "id": message_id, "timestamp": time.time(),
                                  "duplicate": not new}
        if self.board.config.result_delay_ms > 0:
            self.board.later(self.board.config.result_delay_ms, conn.push(result))
        else:
            await conn.push(result)
        if new:
            self._schedule_acks(conn.session, message_id)

    def _confirmed(self, session: str, frame: JsonObject) -> None:
        """The client stored inbound messages (``receipt``) or applied acks (``ack_received``)."""
        records = self.board.records
        if frame.get("type") == "receipt":
            for message_id in as_strings(frame.get("ids") or []):
                records.confirm_inbound(session, message_id)
            return
        acks = frame.get("acks") or []
        for ack in acks if isinstance(acks, list) else []:
            if isinstance(ack, dict):
                level = p.ACK_RANK.get(str(ack.get("level")), 0)
                records.confirm_ack(session, str(ack.get("id")), level)

    async def _group(self, conn: Connection, frame: JsonObject) -> None:
        ref = frame.get("ref")
        if conn.state != "ready" or conn.session is None:
            await conn.push({"type": "group_result", "ref": ref,
                             "error": {"code": p.NOT_READY, "message": f"connection is {conn.state}"}})
            return
        try:
            result = await self.groups.operate(conn.session, frame)
        except GroupFault as exc:
            await conn.push({"type": "group_result", "ref": ref, "error": {"code": exc.code, "message": exc.message}})
            return
        await conn.push({"type": "group_result", "ref": ref, "result": result})

    @staticmethod
    async def _refuse(conn: Connection, ref: JsonValue, code: str, text: str) -> None:
        await conn.push({"type": "send_result", "ref": ref, "error": {"code": code, "message": text}})

    def _refusal(self, session: str, message: JsonObject) -> tuple[str, str] | None:
        """(error code, text) if WhatsApp would refuse this send from a ready connection; None if it goes out."""
        kind, to = str(message.get("kind") or ""), str(message.get("to") or "")
        refusal = self._recipient_refusal(session, kind, to)
        if refusal is not None:
            return refusal
        if kind in p.MEDIA_KINDS or (kind == "status" and message.get("media") is not None):
            media = message.get("media")
            handle = media.get("handle") if isinstance(media, dict) else None
            stored = self.board.records.media(str(handle or ""))
            if stored is None:
                return p.MEDIA_MISSING, "media handle unknown (upload it first)"
            limit = p.MEDIA_LIMITS.get(kind, p.MEDIA_LIMITS["video"])
            if stored["size"] > limit:
                return p.MEDIA_TOO_LARGE, f"{kind} of {stored['size']} bytes exceeds {limit}"
        if kind in CHANGE_KINDS and not message.get("targetId"):
            return p.BAD_REQUEST, f"{kind} needs targetId"
        if message.get("forwarded") and (kind not in FORWARDABLE_KINDS or message.get("replyTo")):
            return p.BAD_REQUEST, f"a forward carries a text, media, location or contacts and quotes nothing ({kind!r})"
        return _content_refusal(kind, message)

    def _recipient_refusal(self, session: str, kind: str, to: str) -> tuple[str, str] | None:
        """A bad kind or recipient, a number nobody has, or a group this phone may not write in."""
        if (to == p.STATUS_CHAT) != (kind == "status"):
            return p.BAD_REQUEST, f"status posts, and only they, go to {p.STATUS_CHAT} (kind {kind!r}, to {to!r})"
        if to == p.STATUS_CHAT:
            return None
        match = p.CHAT_ID.match(to)
        if kind not in p.SEND_KINDS or match is None:
            return p.BAD_REQUEST, f"bad kind {kind!r} or recipient {to!r}"
        digits = match.group(1)
        if digits is not None and not_on_whatsapp(digits, self.board.config.not_on_whatsapp):
            return p.NOT_ON_WHATSAPP, f"{digits} is not on WhatsApp"
        if digits is None and kind not in CHANGE_KINDS:
            return self.groups.send_refusal(session, to)
        return None

    def _schedule_acks(self, session: str, message_id: str) -> None:
        config = self.board.config
        steps = [(1, config.ack_server_ms), (2, config.ack_device_ms)]
        if config.auto_read:
            steps.append((3, config.ack_read_ms))
        for level, delay in steps:
            self.board.later(delay, self._ack(session, message_id, level))

    async def _ack(self, session: str, message_id: str, level: int) -> None:
        if not self.board.records.set_ack(session, message_id, level):
            return
        conn = self.board.ready_connection(session)
        if conn is not None:
            await conn.push({"type": "ack", "id": message_id, "level": p.ACK_LEVELS[level - 1],
                             "timestamp": time.time()})

    def _vote(self, session: str, voter: str, chat: str, body: JsonObject) -> JsonObject:
        """A vote on a poll the session sent: kept on the poll's record; the vote message's content."""
        poll_id = str(body.get("pollId") or "")
        records = self.board.records
        sent = records.message(session, poll_id)
        poll = sent["body"].get("poll") if sent is not None and sent["kind"] == "poll" else None
        if sent is None or not isinstance(poll, dict) or sent["chat"] != chat:
            raise NetworkError(400, f"no poll {poll_id!r} sent by {session} in {chat}")
        options = as_strings(poll.get("options") or [])
        selected = as_strings(body.get("selected") or [])
        count = poll.get("selectableCount")
        unknown = [o for o in selected if o not in options]
        if unknown or (isinstance(count, int) and count > 0 and len(selected) > count):
            raise NetworkError(400, f"a vote picks up to {count or len(options)} of {options}, not {selected}")
        records.record_vote(session, poll_id, voter, selected)
        return {"pollId": poll_id, "selected": list(selected)}

    async def inject(self, session: str, body: JsonObject) -> InjectedInbound:
        """A contact writes to the session's phone: recorded, and pushed now if the session is ready."""
        sender = "".join(ch for ch in str(body.get("from") or "") if ch.isdigit())
        if not sender:
            raise NetworkError(400, "inbound message needs 'from' (the sender's phone number)")
        kind = str(body.get("type") or "text")
        if kind not in p.INBOUND_KINDS:
            raise NetworkError(400, f"unsupported inbound type {kind!r}: one of {', '.join(p.INBOUND_KINDS)}")
        _check_media_flags(kind, body.get("media"))
        message_id = str(body.get("id") or ("3A" + secrets.token_hex(10).upper()))
        chat = str(body.get("chat") or f"{sender}@c.us")
        given: JsonObject = {
            "from": sender, "text": body.get("text"), "media": body.get("media"), "quotedId": body.get("quotedId"),
            "pushName": body.get("pushName") or f"Contact {sender}", "location": body.get("location"),
            "mentions": body.get("mentions"), "contacts": body.get("contacts")}
        if kind == p.POLL_VOTE:
            given.update(self._vote(session, sender, chat, body))
        if body.get("lid") is True and not chat.endswith("@g.us"):
            # A LID-addressed contact: the message comes from the LID, in the LID's chat; the number
            # rides along as the sender's "alt" only when WhatsApp reveals it (``revealNumber``).
            lid = p.lid_of(sender)
            given["from"] = lid
            if body.get("revealNumber", True) is not False:
                given["fromAlt"] = sender
            chat = str(body.get("chat") or lid)
        if chat.endswith("@g.us"):
            # In a group the author is a participant: WhatsApp says who, by number and by LID.
            group = self.board.records.group(chat)
            members = group["body"].get("participants") if group is not None else None
            if not isinstance(members, dict) or sender not in members:
                raise NetworkError(400, f"{sender} is not a participant of group {chat}")
            given["participantLid"] = p.lid_of(sender)
        content: JsonObject = {k: v for k, v in given.items() if v is not None}
        records = self.board.records
        if records.message(session, message_id) is not None:
            raise NetworkError(409, f"message {message_id} already exists")
        records.record_inbound(session, message_id, chat, kind, content)
        conn = self.board.ready_connection(session)
        pushed = False
        if conn is not None:
            stored = records.message(session, message_id)
            if stored is not None:
                await self.board.push_inbound(conn, stored)
                pushed = True
        return {"id": message_id, "session": session, "pushed": pushed}


def _check_media_flags(kind: str, media: object) -> None:
    """Refuse the flag combinations WhatsApp never sends (view-once stickers, animated images)."""
    if not isinstance(media, dict):
        return
    if media.get("viewOnce") is True and kind not in VIEW_ONCE_KINDS:
        raise NetworkError(400, f"only {', '.join(VIEW_ONCE_KINDS)} can be view-once, not {kind}")
    if media.get("animated") is True and kind != "sticker":
        raise NetworkError(400, f"only a sticker can be animated, not {kind}")
