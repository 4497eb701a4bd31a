"""whatsmeow's inbound message events as the driver's ``InboundMessage`` (pure translation, no client)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bisnesgpt.engines.wwebjs.driver import ContactCard, Location, MediaDownload
from bisnesgpt.engines.wwebjs.driver_events import AckLevel, InboundMedia, InboundMessage

# whatsmeow's receipt types that say how far a sent message got.
RECEIPT_LEVELS: dict[int, AckLevel] = {1: "device", 4: "read", 6: "played"}
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
# View-once media arrives wrapped (a FutureProofMessage around the image, video or voice note).
VIEW_ONCE_WRAPPERS = ("viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension")


def sender_of(source: Any) -> tuple[str, str | None]:
    """The author's number and LID (in LID-addressed chats the author is a LID, the number the "alt")."""
    if source.Sender.Server == "lid":
        return source.SenderAlt.User or source.Sender.User, f"{source.Sender.User}@lid"
    if source.SenderAlt.Server == "lid" and source.SenderAlt.User:
        return source.Sender.User, f"{source.SenderAlt.User}@lid"
    return source.Sender.User, None


def chat_of(source: Any) -> str:
    """The chat of a message: ``<digits>@c.us`` or ``<id>@g.us``."""
    return f"{source.Chat.User}@{'g.us' if source.IsGroup else 'c.us'}"


def inbound_of(event: Any, download: Callable[[Any], MediaDownload]) -> InboundMessage | None:
    """whatsmeow's ``Message`` event as an ``InboundMessage`` (None for our own messages).

    View-once media (in one of its wrappers, or flagged ``viewOnce``) and animated stickers
    (``isAnimated``) carry their flags on the ``InboundMedia``.

    ``download`` makes the media's download from the WhatsApp message (whatsmeow fetches
    and decrypts it with the message's media key).
    """
    info, message = event.Info, event.Message
    source = info.MessageSource
    if source.IsFromMe:
        return None
    wrapped = next((w for w in VIEW_ONCE_WRAPPERS if message.HasField(w)), None)
    if wrapped is not None:
        message = getattr(message, wrapped).message
    chat = chat_of(source)
    kind, text, media, quoted = "unknown", None, None, None
    mentions: tuple[str, ...] = ()
    location: Location | None = None
    contacts: tuple[ContactCard, ...] = ()
    sender, lid = sender_of(source)
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
        for name in MEDIA_KINDS:
            field = f"{name}Message"
            if message.HasField(field):
                body = getattr(message, field)
                kind = name
                media = InboundMedia(name, mime_type=getattr(body, "mimetype", None) or None,
                                     filename=getattr(body, "fileName", None) or None,
                                     size=int(getattr(body, "fileLength", 0) or 0) or None,
                                     sha256=(getattr(body, "fileSHA256", b"") or b"").hex() or None,
                                     caption=getattr(body, "caption", None) or None,
                                     view_once=wrapped is not None or bool(getattr(body, "viewOnce", False)),
                                     animated=bool(getattr(body, "isAnimated", False)),
                                     download=download(message))
                break
    return InboundMessage(id=info.ID, chat_id=chat, sender=sender, timestamp=float(info.Timestamp),
                          type=kind, text=text, media=media, quoted_id=quoted, push_name=info.Pushname or None,
                          raw={"type": info.Type, "mediaType": info.MediaType}, sender_lid=lid,
                          mentions=mentions, location=location, contacts=contacts)
