"""Sending on neonize: whatsmeow's message for each kind we send (text, media, cards, polls, locations, status posts,
reactions, edits, deletes), quotes and mentions, and the send itself."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from bisnesgpt.engines.wwebjs.driver import OutgoingMessage, Poll, SentMessage
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, SendRejected
from bisnesgpt.engines.wwebjs.drivers.base import SessionBase
from bisnesgpt.engines.wwebjs.drivers.neonize_device import readable_error

if TYPE_CHECKING:
    from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeDriver

# The message fields that carry a ``contextInfo`` (the quote of a reply, the mentions).
CONTEXT_FIELDS = ("extendedTextMessage", "imageMessage", "videoMessage", "audioMessage", "documentMessage",
                  "stickerMessage", "locationMessage", "contactMessage", "contactsArrayMessage", "pollCreationMessage",
                  "pollCreationMessageV2", "pollCreationMessageV3")


# The first link of a text, as WhatsApp marks it for a preview (``matchedText``).
LINK = re.compile(r"https?://\S+")
# How often the content was forwarded, as WhatsApp counts it (from 5 it shows "Forwarded many times").
FORWARDING_SCORE = 1


def _with_context(payload: Any, message: OutgoingMessage) -> Any:
    """Quote ``message.reply_to``, mention ``message.mentions`` and mark a forward (``isForwarded``,
    ``forwardingScore``) in whichever message ``payload`` carries."""
    if not message.reply_to and not message.mentions and not message.forwarded:
        return payload
    for name in CONTEXT_FIELDS:
        if payload.HasField(name):
            context = getattr(payload, name).contextInfo
            if message.reply_to:
                context.stanzaID, context.participant = message.reply_to, message.to
            context.mentionedJID.extend(f"{n}@s.whatsapp.net" for n in message.mentions)
            if message.forwarded:
                context.isForwarded, context.forwardingScore = True, FORWARDING_SCORE
            break
    return payload


def text_message(message: OutgoingMessage) -> Any:
    """A text: a plain ``conversation``, or an ``extendedTextMessage`` when it quotes, mentions, is forwarded
    (those live in its ``contextInfo``) or asks for a link preview.

    A preview is asked by ``matchedText`` = the text's first http(s) link, with ``previewType`` NONE;
    no title, description or thumbnail is fetched (neonize's own ``link_preview=True`` would fetch
    the page from this process, and applies only to a text given as a string). Without the flag the
    text carries no ``matchedText``, so WhatsApp shows no preview card.
    """
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

    text = message.text or ""
    link = LINK.search(text) if message.preview_url else None
    if link is None and not (message.reply_to or message.mentions or message.forwarded):
        return WAMessage(conversation=text)
    extended = ExtendedTextMessage(text=text)
    if link is not None:
        extended.matchedText = link.group(0)
        extended.previewType = ExtendedTextMessage.PreviewType.NONE
    return WAMessage(extendedTextMessage=extended)


class NeonizeSending(SessionBase):
    """The sends of a neonize session (mixed into ``NeonizeSession``, which owns the client)."""

    client: Any
    driver: NeonizeDriver

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
        return await client.send_message(chat, _with_context(built, message))

    async def _payload(self, client: Any, message: OutgoingMessage) -> Any:
        """The WhatsApp message for a text, media, contacts, poll or location send."""
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import LocationMessage
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

        if message.kind == "text":
            return text_message(message)
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
