"""The ``neonize`` driver: WhatsApp Web multi-device through whatsmeow (the Go library neonize binds).

* Session store: whatsmeow's own tables, in PostgreSQL (DATABASE_URL), in their own schema
  (WWEBJS_STORE_SCHEMA, created at start; whatsmeow creates and upgrades its tables on
  first use). neonize picks the PostgreSQL dialect for names starting with ``postgres``;
  the schema is selected with ``search_path`` in the DSN.
* One client per phone. A new phone is a new device (QR or pairing code); a paired phone is
  resumed by its device JID, which is the only thing kept in our session store.
* QR codes arrive as strings; the session manager renders them as PNG data URLs (segno).
* Media by URL is downloaded here with the size limit (WWEBJS_MEDIA_MAX_BYTES) and uploaded
  by whatsmeow. neonize needs ffmpeg for video/sticker thumbnails.

whatsmeow reconnects by itself; the session manager owns reconnects instead, so a
disconnect stops the client and the manager decides when to try again (backoff, breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs.driver import (
    AckLevel,
    AuthState,
    ContactCard,
    DriverConnectError,
    DriverError,
    EventSink,
    GroupChanges,
    GroupInfo,
    GroupRefused,
    InboundMedia,
    InboundMessage,
    Location,
    MediaDownload,
    NotConnected,
    OutgoingMessage,
    PairingUnavailable,
    ParticipantAction,
    ParticipantResult,
    Poll,
    PollVote,
    SendRejected,
    SentMessage,
    SessionKey,
    TypingState,
)
from bisnesgpt.engines.wwebjs.drivers.base import SessionBase
from bisnesgpt.engines.wwebjs.drivers.neonize_groups import (
    INVITE_PREFIX,
    group_events_of,
    group_of,
    participant_results,
    user_jid,
)
from bisnesgpt.engines.wwebjs.media import MediaDownloadFailed, MediaFetcher

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.engines.wwebjs.drivers")

# A connect attempt that fails does so within milliseconds (DNS, TCP, TLS); one that is
# still running after this long is connected and waiting for a QR scan or the server.
STARTUP_GRACE = 3.0
RECEIPT_LEVELS: dict[int, AckLevel] = {1: "device", 4: "read", 6: "played"}


# The message fields that carry a ``contextInfo`` (the quote of a reply, the mentions).
CONTEXT_FIELDS = ("extendedTextMessage", "imageMessage", "videoMessage", "audioMessage", "documentMessage",
                  "stickerMessage", "locationMessage", "contactMessage", "contactsArrayMessage", "pollCreationMessage",
                  "pollCreationMessageV2", "pollCreationMessageV3")


def _with_context(payload: Any, message: OutgoingMessage) -> Any:
    """Quote ``message.reply_to`` and mention ``message.mentions`` in whichever message ``payload`` carries."""
    if not message.reply_to and not message.mentions:
        return payload
    for name in CONTEXT_FIELDS:
        if payload.HasField(name):
            context = getattr(payload, name).contextInfo
            if message.reply_to:
                context.stanzaID, context.participant = message.reply_to, message.to
            context.mentionedJID.extend(f"{n}@s.whatsapp.net" for n in message.mentions)
            break
    return payload


def _refused(what: str, exc: Exception) -> DriverError:
    """A neonize group error as the driver's: WhatsApp's answers name the cause in words."""
    text = readable_error(exc).lower()
    code = ("NOT_GROUP_ADMIN" if "forbidden" in text or "not-authorized" in text or "403" in text
            else "GROUP_NOT_FOUND" if "item-not-found" in text or "404" in text
            else "INVITE_INVALID" if what == "join" else None)
    if code is None:
        return DriverError(f"group {what} failed: {readable_error(exc)}")
    return GroupRefused(f"group {what} failed: {readable_error(exc)}", code=code)


def store_dsn(database_url: str, schema: str, sslmode: str, application_name: str | None = None) -> str:
    """DATABASE_URL for lib/pq with whatsmeow's schema on the search path."""
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("sslmode", sslmode)
    query["search_path"] = schema
    if application_name:
        query["application_name"] = application_name
    scheme = "postgres" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(query)))


def readable_error(exc: BaseException) -> str:
    """What went wrong in whatsmeow's words, saying so plainly when WhatsApp cannot be reached."""
    text = str(exc) or type(exc).__name__
    if "web.whatsapp.com" in text and ("no such host" in text or "dial" in text):
        return f"cannot reach WhatsApp (web.whatsapp.com): {text}"
    return text


@dataclass(frozen=True)
class DeviceJid:
    """The paired device's JID: all our session store keeps for neonize (its keys are whatsmeow's)."""

    user: str
    server: str
    device: int = 0
    raw_agent: int = 0

    @classmethod
    def from_auth(cls, auth_state: AuthState) -> DeviceJid | None:
        """The JID stored in ``auth_state`` (``{"jid": {user, server, device, rawAgent}}``); None if unpaired."""
        jid = auth_state.get("jid")
        if not isinstance(jid, dict) or not jid:
            return None
        device, raw_agent = jid.get("device", 0), jid.get("rawAgent", 0)
        return cls(str(jid["user"]), str(jid["server"]), int(device) if isinstance(device, int | str) else 0,
                   int(raw_agent) if isinstance(raw_agent, int | str) else 0)

    def as_auth(self) -> JsonObject:
        """The ``auth_state`` that resumes this device."""
        return {"jid": {"user": self.user, "server": self.server, "device": self.device, "rawAgent": self.raw_agent}}


class NeonizeDriver:
    """Sessions on WhatsApp's network through neonize, with whatsmeow's store in PostgreSQL."""

    name = "neonize"

    def __init__(self, db: Database, database_url: str, *, schema: str, sslmode: str, media: MediaFetcher) -> None:
        self.db = db
        self.schema = schema
        self.database_url = database_url
        self.sslmode = sslmode
        self._attempts = itertools.count(1)
        self.media = media
        self.load_error: str | None = None

    async def open(self) -> None:
        """Create whatsmeow's schema and load the Go library (a failure to load fails every session start)."""
        async with self.db.transaction() as conn:
            await conn.execute(SQL.name_store_schema, self.schema)
            await conn.execute(SQL.create_store_schema)
        try:
            import neonize.aioze.client  # noqa: F401 - loads the Go library once, at start
        except (ImportError, OSError) as exc:
            self.load_error = f"neonize cannot be loaded on this machine: {exc}"
            log.exception("%s", self.load_error)

    def session(self, key: SessionKey, sink: EventSink, auth_state: AuthState | None) -> NeonizeSession:
        """A new neonize client for ``key``, resuming the device of ``auth_state`` if it has one."""
        return NeonizeSession(self, key, sink, auth_state)

    def attempt_dsn(self) -> tuple[str, str]:
        """A DSN whose connections are recognisable as this connection attempt's."""
        name = f"bisnesgpt-wa-{os.getpid()}-{next(self._attempts)}"
        return store_dsn(self.database_url, self.schema, self.sslmode, name), name

    async def release_connections(self, application_name: str) -> int:
        """Close the PostgreSQL connections neonize left open for one finished attempt.

        neonize opens a new database handle (a Go sql.DB) for every connect and never closes
        it; each attempt's own ``application_name`` lets them be closed from here (otherwise
        every retry leaks a PostgreSQL connection).
        """
        try:
            return int(await self.db.fetchval(SQL.terminate_attempt_connections, application_name) or 0)
        except BisnesgptError as exc:
            log.warning("could not close neonize's connections %s: %s", application_name, exc.detail)
            return 0

    async def close(self) -> None:
        """Nothing to release: each session closes its own client."""
        return None


class NeonizeSession(SessionBase):
    """One phone's neonize client: connect (QR, pairing code or resume), events, sends."""

    def __init__(self, driver: NeonizeDriver, key: SessionKey, sink: EventSink,
                 auth_state: AuthState | None) -> None:
        super().__init__(key, sink)
        self.driver = driver
        self.jid = DeviceJid.from_auth(auth_state or {})
        self.client: Any = None
        self._application_name: str | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def connected(self) -> bool:
        """Whether the neonize client exists (it may still be connecting)."""
        return self.client is not None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, pairing_phone: str | None = None) -> None:
        """Connect; a new device (no stored JID) shows a QR, or a pairing code for ``pairing_phone``."""
        if self.driver.load_error:
            raise DriverConnectError(self.driver.load_error)
        from neonize.aioze.client import NewAClient
        from neonize.proto.Neonize_pb2 import JID

        stored = self.jid
        jid = JID(User=stored.user, Server=stored.server, Device=stored.device, RawAgent=stored.raw_agent,
                  Integrator=0, IsEmpty=False) if stored else None
        dsn, self._application_name = self.driver.attempt_dsn()
        self.client = NewAClient(dsn, jid=jid, uuid=None if jid else str(self.key), new_device=jid is None)
        self._subscribe(self.client)
        try:
            task = await self.client.connect()
        except Exception as exc:
            raise DriverConnectError(readable_error(exc)) from exc
        done, _ = await asyncio.wait({task}, timeout=STARTUP_GRACE)
        if task in done:
            error = task.exception()
            await self._stop_client()
            raise DriverConnectError(readable_error(error) if error else "the WhatsApp connection ended at once")
        self._task = task
        task.add_done_callback(self._connection_ended)
        if pairing_phone and jid is None:
            await self.request_pairing_code(pairing_phone)

    def _connection_ended(self, task: asyncio.Task[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        self.report_connection_lost(readable_error(error) if error else "connection to WhatsApp ended")

    async def stop(self) -> None:
        """Stop the client (the device stays paired) and close the attempt's database connections."""
        self.stopped = True
        await self._stop_client()

    async def _stop_client(self) -> None:
        client, self.client = self.client, None
        self.ready = False
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 10)
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5)
        if self._application_name is not None:
            await self.driver.release_connections(self._application_name)

    async def logout(self) -> None:
        """Unlink the device on WhatsApp."""
        self.require_connected()
        try:
            await self.client.logout()
        except Exception as exc:
            raise DriverError(f"logout failed: {readable_error(exc)}") from exc

    async def request_pairing_code(self, phone_number: str) -> str:
        """A pairing code for ``phone_number`` (digits only are sent), also reported as an event."""
        self.require_pairable()
        digits = "".join(ch for ch in phone_number if ch.isdigit())
        try:
            code = str(await self.client.PairPhone(digits, True))
        except Exception as exc:
            raise PairingUnavailable(f"pairing code request failed: {readable_error(exc)}") from exc
        self.report_pairing_code(code, digits)
        return code

    # --- events -----------------------------------------------------------------------------------

    def _subscribe(self, client: Any) -> None:
        from neonize.aioze.events import (
            ConnectedEv,
            ConnectFailureEv,
            DisconnectedEv,
            GroupInfoEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
            ReceiptEv,
            StreamReplacedEv,
            TemporaryBanEv,
        )

        async def on_qr(_client: Any, data: bytes) -> None:
            self.report_qr(data.decode() if isinstance(data, bytes) else str(data))

        async def on_pair(_client: Any, event: Any) -> None:
            if int(event.Status) == 2:  # SUCCESS
                jid = event.ID
                self.jid = DeviceJid(jid.User, jid.Server, jid.Device, jid.RawAgent)
                self.report_authenticated(self.jid.as_auth(), phone_number=jid.User,
                                          device_id=f"{jid.User}:{jid.Device}@{jid.Server}")
            else:
                self.report_disconnected(f"pairing failed: {event.Error}")

        async def on_connected(_client: Any, _event: Any) -> None:
            user = self.jid.user if self.jid else None
            if not self.ready and self.jid:
                self.report_authenticated(self.jid.as_auth(), phone_number=user)
            self.report_ready(user)

        async def on_logged_out(_client: Any, event: Any) -> None:
            self.report_logged_out(f"logged out by WhatsApp (reason {int(event.Reason)})")

        async def on_disconnected(_client: Any, _event: Any) -> None:
            self.report_connection_lost("connection to WhatsApp lost")

        async def on_replaced(_client: Any, _event: Any) -> None:
            self.report_disconnected("replaced: this device connected from another client")

        async def on_connect_failure(_client: Any, event: Any) -> None:
            self.report_disconnected(f"WhatsApp refused the connection: {event.Message or int(event.Reason)}",
                                     connect_failure=True)

        async def on_ban(_client: Any, event: Any) -> None:
            self.report_disconnected(f"temporarily banned by WhatsApp (code {int(event.Code)}, "
                                     f"expires in {int(event.Expire)} s)")

        async def on_message(client: Any, event: Any) -> None:
            if event.Message.HasField("pollUpdateMessage"):
                vote = await self._poll_vote(client, event)
                if vote is not None:
                    self.sink(vote)
                return
            inbound = self._inbound(event)
            if inbound is not None:
                self.report_inbound(inbound)

        async def on_receipt(_client: Any, event: Any) -> None:
            level = RECEIPT_LEVELS.get(int(event.Type))
            if level is not None:
                stamp = getattr(event, "Timestamp", 0)  # whatsmeow's receipt time (Unix seconds)
                at = float(stamp) if isinstance(stamp, int | float) and stamp > 0 else None
                for message_id in event.MessageIDs:
                    self.report_ack(str(message_id), level, at=at)

        async def on_group_info(_client: Any, event: Any) -> None:
            for group_event in group_events_of(event):
                self.sink(group_event)

        client.qr(on_qr)
        for event_type, handler in ((PairStatusEv, on_pair), (ConnectedEv, on_connected),
                                    (LoggedOutEv, on_logged_out), (DisconnectedEv, on_disconnected),
                                    (StreamReplacedEv, on_replaced), (ConnectFailureEv, on_connect_failure),
                                    (TemporaryBanEv, on_ban), (MessageEv, on_message), (ReceiptEv, on_receipt),
                                    (GroupInfoEv, on_group_info)):
            client.event(event_type)(handler)

    @staticmethod
    def _sender(source: Any) -> tuple[str, str | None]:
        """The author's number and LID (in LID-addressed chats the author is a LID, the number the "alt")."""
        if source.Sender.Server == "lid":
            return source.SenderAlt.User or source.Sender.User, f"{source.Sender.User}@lid"
        if source.SenderAlt.Server == "lid" and source.SenderAlt.User:
            return source.Sender.User, f"{source.SenderAlt.User}@lid"
        return source.Sender.User, None

    async def _poll_vote(self, client: Any, event: Any) -> PollVote | None:
        """A vote on a poll: whatsmeow decrypts it (``decrypt_poll_vote``); the options come as SHA-256."""
        info = event.Info
        source = info.MessageSource
        if source.IsFromMe:
            return None
        try:
            vote = await client.decrypt_poll_vote(event)
        except Exception as exc:  # neonize's DecryptPollVoteError: not our poll, or keys missing
            log.warning("session %s: poll vote %s not readable: %s", self.key, info.ID, readable_error(exc))
            return None
        voter, lid = self._sender(source)
        chat = f"{source.Chat.User}@{'g.us' if source.IsGroup else 'c.us'}"
        return PollVote(id=info.ID, poll_id=event.Message.pollUpdateMessage.pollCreationMessageKey.ID, chat_id=chat,
                        voter=voter, timestamp=float(info.Timestamp),
                        selected_hashes=tuple(bytes(h).hex() for h in vote.selectedOptions), voter_lid=lid)

    def _inbound(self, event: Any) -> InboundMessage | None:
        info, message = event.Info, event.Message
        source = info.MessageSource
        if source.IsFromMe:
            return None
        chat = f"{source.Chat.User}@{'g.us' if source.IsGroup else 'c.us'}"
        kind, text, media, quoted = "unknown", None, None, None
        mentions: tuple[str, ...] = ()
        location: Location | None = None
        contacts: tuple[ContactCard, ...] = ()
        sender, lid = self._sender(source)
        if message.conversation:
            kind, text = "text", message.conversation
        elif message.HasField("extendedTextMessage"):
            kind, text = "text", message.extendedTextMessage.text
            context = message.extendedTextMessage.contextInfo
            quoted = context.stanzaID or None
            mentions = tuple(str(j).partition("@")[0] for j in context.mentionedJID)
        elif message.HasField("locationMessage") or message.HasField("liveLocationMessage"):
            live = message.HasField("liveLocationMessage")
            pin = message.liveLocationMessage if live else message.locationMessage
            kind = "location"
            location = Location(latitude=pin.degreesLatitude, longitude=pin.degreesLongitude,
                                name=None if live else (pin.name or None),
                                address=None if live else (pin.address or None))
            text = pin.caption or None if live else None
        elif message.HasField("contactMessage"):
            card = message.contactMessage
            kind, contacts = "contacts", (ContactCard(card.displayName, card.vcard),)
        elif message.HasField("contactsArrayMessage"):
            kind = "contacts"
            contacts = tuple(ContactCard(c.displayName, c.vcard) for c in message.contactsArrayMessage.contacts)
        else:
            for name in ("image", "video", "audio", "document", "sticker"):
                field = f"{name}Message"
                if message.HasField(field):
                    body = getattr(message, field)
                    kind = name
                    media = InboundMedia(name, mime_type=getattr(body, "mimetype", None) or None,
                                         filename=getattr(body, "fileName", None) or None,
                                         size=int(getattr(body, "fileLength", 0) or 0) or None,
                                         sha256=(getattr(body, "fileSHA256", b"") or b"").hex() or None,
                                         caption=getattr(body, "caption", None) or None,
                                         download=self._media_download(message))
                    break
        return InboundMessage(id=info.ID, chat_id=chat, sender=sender, timestamp=float(info.Timestamp),
                              type=kind, text=text, media=media, quoted_id=quoted, push_name=info.Pushname or None,
                              raw={"type": info.Type, "mediaType": info.MediaType}, sender_lid=lid,
                              mentions=mentions, location=location, contacts=contacts)

    def _media_download(self, message: Any) -> MediaDownload:
        """whatsmeow downloads and decrypts the media (its media key, CDN path) into a file we then stream."""
        async def chunks() -> AsyncIterator[bytes]:
            client = self.client
            if client is None:
                raise NotConnected("the session is not connected: media cannot be downloaded now")
            with tempfile.TemporaryDirectory(prefix="bisnesgpt-media-") as folder:
                path = Path(folder) / "media"
                try:
                    await client.download_any(message, str(path))
                except Exception as exc:  # neonize raises its own error types for CDN and decryption failures
                    raise MediaDownloadFailed(f"whatsmeow could not download the media: {exc}") from exc
                with path.open("rb") as handle:
                    while chunk := await asyncio.to_thread(handle.read, 256 * 1024):
                        yield chunk

        return chunks

    # --- sending ----------------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> SentMessage:
        """Send through whatsmeow (media is downloaded here first, with the size limit)."""
        self.require_ready()
        from neonize.proto.Neonize_pb2 import JID

        user, _, server = message.to.partition("@")
        servers = {"g.us": "g.us", "broadcast": "broadcast"}  # a group, or status@broadcast
        chat = JID(User=user, Server=servers.get(server, "s.whatsapp.net"), Device=0, RawAgent=0, Integrator=0,
                   IsEmpty=False)
        try:
            response = await self._send(self.client, chat, message)
        except DriverError:
            raise
        except Exception as exc:
            raise DriverError(f"send failed: {readable_error(exc)}") from exc
        return SentMessage(str(response.ID), float(response.Timestamp or time.time()))

    async def _send(self, client: Any, chat: Any, message: OutgoingMessage) -> Any:
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

        if message.kind == "reaction":
            # The reacted-to message's author is not known here; in 1:1 chats the chat JID works.
            reaction = await client.build_reaction(chat, chat, message.target_id or "", message.text or "")
            return await client.send_message(chat, reaction)
        if message.kind == "edit":
            return await client.edit_message(chat, message.target_id or "", WAMessage(conversation=message.text or ""))
        if message.kind == "delete":
            me = getattr(getattr(client, "me", None), "JID", None) or chat
            return await client.revoke_message(chat, me, message.target_id or "")
        built = await (self._status(client, message) if message.kind == "status" else self._payload(client, message))
        payload = _with_context(built, message)
        if message.kind == "text":
            return await client.send_message(chat, payload, link_preview=message.preview_url)
        return await client.send_message(chat, payload)

    async def _payload(self, client: Any, message: OutgoingMessage) -> Any:
        """The WhatsApp message for a text, media, contacts, poll or location send."""
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage, LocationMessage
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

        if message.kind == "text":
            if message.reply_to or message.mentions:  # quotes and mentions live in an extended text
                return WAMessage(extendedTextMessage=ExtendedTextMessage(text=message.text or ""))
            return WAMessage(conversation=message.text or "")
        if message.media is not None:
            return await self._media_message(client, message)
        if message.kind == "contacts" and message.contacts:
            return self._cards(message)
        if message.kind == "poll" and message.poll is not None:
            return await self._poll(client, message.poll)
        if message.kind == "location" and message.location is not None:
            loc = message.location
            return WAMessage(locationMessage=LocationMessage(
                degreesLatitude=loc["latitude"], degreesLongitude=loc["longitude"], name=loc.get("name") or "",
                address=loc.get("address") or ""))
        raise SendRejected(f"cannot send {message.kind} on WhatsApp Web", code="UNSUPPORTED_MESSAGE_TYPE")

    async def _status(self, client: Any, message: OutgoingMessage) -> Any:
        """A status post to status@broadcast: a text with ``backgroundArgb``/``font``, or an image or video.

        neonize's ``send_message`` has no list of status recipients (whatsmeow then sends to the
        contacts the phone's status privacy setting names): a list is refused rather than ignored.
        """
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

        post = message.status
        assert post is not None
        if post.recipients:
            raise SendRejected("status posts to a list of contacts are not offered by the neonize driver: leave "
                               "out status.recipients (the phone's status privacy setting decides who sees it)",
                               code="STATUS_RECIPIENTS_UNSUPPORTED")
        if message.media is not None:
            return await self._media_message(client, message, kind=post.media_kind)
        text = ExtendedTextMessage(text=message.text or "")
        if post.background_color:
            text.backgroundArgb = 0xFF000000 | int(post.background_color.lstrip("#"), 16)
        if post.font is not None:
            text.font = post.font
        return WAMessage(extendedTextMessage=text)

    @staticmethod
    def _cards(message: OutgoingMessage) -> Any:
        """One card: a ``contactMessage``; several: a ``contactsArrayMessage``."""
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContactMessage, ContactsArrayMessage
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

        cards = [ContactMessage(displayName=c.name, vcard=c.vcard) for c in message.contacts]
        if len(cards) == 1:
            return WAMessage(contactMessage=cards[0])
        return WAMessage(contactsArrayMessage=ContactsArrayMessage(displayName=f"{len(cards)} contacts",
                                                                   contacts=cards))

    @staticmethod
    async def _poll(client: Any, poll: Poll) -> Any:
        """``build_poll_vote_creation`` (SINGLE for one choice, else MULTIPLE, capped at ``selectable_count``)."""
        from neonize.utils.enum import VoteType

        vote_type = VoteType.SINGLE if poll.selectable_count == 1 else VoteType.MULTIPLE
        built = await client.build_poll_vote_creation(poll.name, list(poll.options), vote_type)
        if poll.selectable_count > 1:
            for name in ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3"):
                if built.HasField(name):
                    getattr(built, name).selectableOptionsCount = poll.selectable_count
        return built

    async def _media_message(self, client: Any, message: OutgoingMessage, *, kind: str | None = None) -> Any:
        assert message.media is not None
        media = await self.driver.media.fetch(message.media)
        kind = kind or message.kind
        if kind == "image":
            return await client.build_image_message(media.data, caption=message.text)
        if kind == "video":
            return await client.build_video_message(media.data, caption=message.text)
        if kind == "audio":
            return await client.build_audio_message(media.data)
        if kind == "sticker":
            return await client.build_sticker_message(media.data)
        return await client.build_document_message(media.data, caption=message.text, filename=media.filename,
                                                   mimetype=media.mime_type)

    # --- groups -----------------------------------------------------------------------------------
    # whatsmeow's group calls: GetJoinedGroups, GetGroupInfo, CreateGroup, UpdateGroupParticipants,
    # SetGroupName, SetGroupTopic, SetGroupAnnounce, SetGroupLocked, GetGroupInviteLink,
    # JoinGroupWithLink, LeaveGroup (neonize's get_joined_groups, get_group_info, ...).

    async def check_numbers(self, numbers: list[str]) -> dict[str, bool]:
        """``is_on_whatsapp`` (whatsmeow's IsOnWhatsApp usync query), answered per number."""
        self.require_ready()
        answers = await self._call("check", self.client.is_on_whatsapp(*[f"+{n}" for n in numbers]))
        found = {"".join(ch for ch in str(a.Query) if ch.isdigit()): bool(a.IsIn) for a in answers}
        return {n: found.get(n, False) for n in numbers}

    async def typing(self, chat_id: str, state: TypingState) -> None:
        """``send_chat_presence`` with ``CHAT_PRESENCE_COMPOSING`` / ``CHAT_PRESENCE_PAUSED`` (text)."""
        self.require_ready()
        from neonize.utils.enum import ChatPresence, ChatPresenceMedia

        presence = ChatPresence.CHAT_PRESENCE_COMPOSING if state == "composing" else ChatPresence.CHAT_PRESENCE_PAUSED
        await self._call("presence", self.client.send_chat_presence(user_jid(chat_id), presence,
                                                                     ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT))

    @property
    def _me(self) -> str | None:
        return self.jid.user if self.jid else None

    async def _call(self, what: str, call: Any) -> Any:
        self.require_ready()
        try:
            return await call
        except DriverError:
            raise
        except Exception as exc:  # neonize raises its own error per call (GetGroupInfoError, ...)
            raise _refused(what, exc) from exc

    async def groups(self) -> list[GroupInfo]:
        """The groups this phone is in (``get_joined_groups``)."""
        self.require_ready()
        found = await self._call("list", self.client.get_joined_groups())
        return [group_of(g, self._me) for g in found]

    async def group_info(self, group_id: str) -> GroupInfo:
        """One group (``get_group_info``), with ``get_group_invite_link`` when this phone is an admin."""
        self.require_ready()
        group = group_of(await self._call("info", self.client.get_group_info(user_jid(group_id))), self._me)
        if group.is_admin:
            link = await self._call("invite", self.client.get_group_invite_link(user_jid(group_id), False))
            group = dataclasses.replace(group, invite_link=str(link))
        return group

    async def create_group(self, subject: str, participants: list[str]) -> tuple[GroupInfo, list[ParticipantResult]]:
        """A new group (``create_group``); what became of each participant is read from its participants."""
        self.require_ready()
        info = await self._call("create", self.client.create_group(subject, [user_jid(n) for n in participants]))
        return group_of(info, self._me), participant_results("add", participants, info.Participants)

    async def update_participants(self, group_id: str, action: ParticipantAction,
                                  numbers: list[str]) -> list[ParticipantResult]:
        """``update_group_participants`` with neonize's ``ParticipantChange`` for ``action``."""
        self.require_ready()
        from neonize.utils.enum import ParticipantChange

        changed = await self._call(action, self.client.update_group_participants(
            user_jid(group_id), [user_jid(n) for n in numbers], ParticipantChange(action)))
        return participant_results(action, numbers, changed)

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupInfo:
        """``set_group_name``, ``set_group_topic``, ``set_group_announce``, ``set_group_locked``; then the group."""
        self.require_ready()
        jid = user_jid(group_id)
        if changes.subject is not None:
            await self._call("update", self.client.set_group_name(jid, changes.subject))
        if changes.description is not None:
            # whatsmeow wants the current topic's id and a new one (empty previous id: none known).
            current = await self._call("info", self.client.get_group_info(jid))
            new_id = await self.client.generate_message_id()
            await self._call("update", self.client.set_group_topic(jid, current.GroupTopic.TopicID, new_id,
                                                                  changes.description))
        if changes.announce is not None:
            await self._call("update", self.client.set_group_announce(jid, changes.announce))
        if changes.locked is not None:
            await self._call("update", self.client.set_group_locked(jid, changes.locked))
        return await self.group_info(group_id)

    async def invite_link(self, group_id: str, *, revoke: bool = False) -> str:
        """``get_group_invite_link`` (``revoke``: a new link, the old one void)."""
        self.require_ready()
        return str(await self._call("invite", self.client.get_group_invite_link(user_jid(group_id), revoke)))

    async def join_group(self, invite: str) -> str:
        """``join_group_with_link`` with the link's code; the group's id."""
        self.require_ready()
        code = invite.strip().removeprefix(INVITE_PREFIX).strip("/")
        jid = await self._call("join", self.client.join_group_with_link(code))
        return f"{jid.User}@g.us"

    async def leave_group(self, group_id: str) -> None:
        """``leave_group``."""
        self.require_ready()
        await self._call("leave", self.client.leave_group(user_jid(group_id)))
