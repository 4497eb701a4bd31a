"""What arrives on a session: inbound messages (stored like Meta's) and delivery acks.

Inbound messages become ``messages`` rows (direction ``inbound``, provider ``wwebjs``,
deduplicated on the provider id per phone) with a tenant ``message.inbound`` event in the
same transaction; media is downloaded first (``inbound_media.py``) and the event's
``data.media`` names the stored object (or why it failed). Acks move our outbound messages
forward (``sent → delivered → read``) through ``advance_status``, which never moves
backwards; an ack that arrives before the worker recorded the external id is retried for a
short while.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime

import asyncpg

from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.core.ids import new_message_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs import metrics
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.driver_events import (
    DeliveryAck,
    GroupEvent,
    GroupParticipantsChanged,
    InboundMessage,
    Notification,
    PollVote,
)
from bisnesgpt.engines.wwebjs.inbound_media import InboundMediaKeeper, KeptMedia
from bisnesgpt.engines.wwebjs.vcards import contact_of
from bisnesgpt.media import downloads
from bisnesgpt.media.library import MediaJson
from bisnesgpt.messaging import store as message_store
from bisnesgpt.messaging.events import (
    GROUP_PARTICIPANTS,
    GROUP_UPDATED,
    MESSAGE_INBOUND,
    MESSAGE_POLL_VOTE,
    EventType,
    record_tenant_event,
)
from bisnesgpt.messaging.states import MessageState, ProviderStatus, advance_status

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.engines.wwebjs")
ACK_STATUS: dict[str, MessageState] = {"server": "sent", "device": "delivered", "read": "read", "played": "read"}
ACK_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# While PostgreSQL is unavailable an inbound message or ack is retried in the background
# (not confirmed to WhatsApp until stored) at most this far apart, for as long as it takes.
OUTAGE_RETRY_MAX_S = 2.0


def inbound_payload(message: InboundMessage) -> JsonObject:
    """The Cloud-API-webhook-shaped body of an inbound message (what tenants already parse)."""
    body: JsonObject = {"from": message.sender, "id": message.id, "timestamp": str(int(message.timestamp)),
                        "type": message.type}
    if message.push_name:
        body["profile"] = {"name": message.push_name}
    if message.type == "text":
        body["text"] = {"body": message.text or ""}
    elif message.location is not None:
        pin = message.location
        body["location"] = {k: v for k, v in {"latitude": pin["latitude"], "longitude": pin["longitude"],
                                              "name": pin["name"], "address": pin["address"]}.items() if v is not None}
    elif message.contacts:
        body["contacts"] = [contact_of(card) for card in message.contacts]
    elif message.media is not None:
        media = message.media
        body[message.type] = {k: v for k, v in {
            "mime_type": media.mime_type, "sha256": media.sha256, "caption": media.caption,
            "filename": media.filename, "link": media.url, "file_size": media.size,
            # Flags only when set (a plain image or a static sticker looks as it always did).
            "view_once": media.view_once or None, "animated": media.animated or None}.items() if v is not None}
    elif message.text is not None:
        body[message.type] = {"body": message.text}
    if message.quoted_id:
        body["context"] = {"id": message.quoted_id}
    if message.chat_id.endswith("@g.us"):
        # A group message: the group, and its author by number and (when WhatsApp says) LID.
        body["group"] = {"id": message.chat_id, "participant": message.sender, "participant_lid": message.sender_lid}
    if message.mentions:
        body["mentions"] = list(message.mentions)
    return body


def _group_fields(message: InboundMessage) -> JsonObject:
    """What a group message's ``message.inbound`` event adds: the group, the author's LID, the mentions."""
    fields: JsonObject = {}
    if message.chat_id.endswith("@g.us"):
        fields.update({"group_id": message.chat_id, "participant": message.sender,
                       "participant_lid": message.sender_lid})
    if message.mentions:
        fields["mentions"] = list(message.mentions)
    return fields


def group_event_data(event: GroupEvent) -> JsonObject:
    """The tenant event's data for a group notification."""
    data: JsonObject = {"group_id": event.group_id, "by": event.by,
                        "timestamp": datetime.fromtimestamp(event.timestamp, UTC).isoformat(),
                        "provider": "wwebjs", "notification_id": event.id}
    if isinstance(event, GroupParticipantsChanged):
        data.update({"change": event.change, "participants": list(event.participants)})
    else:
        data["changes"] = event.changes
    return data


class InboundRecorder:
    """Stores inbound messages and applies acks for the sessions of one process."""

    def __init__(self, db: Database, *, source: str = "wwebjs", media: InboundMediaKeeper | None = None) -> None:
        self.db = db
        self.media = media
        self.source = source
        self.stored = 0
        self.duplicates = 0
        self._retries: set[asyncio.Task[None]] = set()

    async def on_inbound(self, key: SessionKey, message: InboundMessage) -> bool:
        """True when stored; False when PostgreSQL is unavailable and it is retried in the background
        (confirmed to WhatsApp only once stored: a connection lost meanwhile redelivers it too)."""
        try:
            return await self._store_inbound(key, message)
        except DatabaseUnavailable as exc:
            log.warning("inbound %s on %s not stored (%s); retrying in the background", message.id, key, exc.detail)
            self._spawn(self._retry_inbound(key, message), f"inbound-retry:{message.id}")
            return False

    async def _retry_inbound(self, key: SessionKey, message: InboundMessage) -> None:
        pause = 0.2
        while True:
            await asyncio.sleep(pause)
            try:
                await self._store_inbound(key, message)
            except DatabaseUnavailable:
                pause = min(pause * 2, OUTAGE_RETRY_MAX_S)
                continue
            if message.confirm is not None:
                with contextlib.suppress(Exception):
                    await message.confirm()
            return

    def _spawn(self, coroutine: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _keep_media(self, key: SessionKey, message: InboundMessage) -> KeptMedia | None:
        """The message's media stored first (None: no media, no keeper, or a redelivery of a stored message)."""
        if message.media is None or self.media is None:
            return None
        async with self.db.connection() as conn:
            if await downloads.inbound_exists(conn, key.company_id, key.phone_index, message.id):
                return None
        return await self.media.keep(key.company_id, message.media)

    def _media_json(self, key: SessionKey, message: InboundMessage, kept: KeptMedia | None) -> MediaJson | None:
        if kept is None or self.media is None or message.media is None:
            return None
        if kept.media is not None:
            return downloads.stored_media(self.media.signer, kept.media)
        return {"id": None, "url": None, "mime_type": message.media.mime_type, "size": message.media.size,
                "sha256": message.media.sha256, "filename": message.media.filename, "state": "failed",
                "error": kept.error}

    async def _store_inbound(self, key: SessionKey, message: InboundMessage) -> bool:
        payload = inbound_payload(message)
        kept = await self._keep_media(key, message)
        media_json = self._media_json(key, message, kept)
        media = message.media
        content = message.text if message.text is not None else (media.caption if media else None)
        if content is None and message.location is not None:
            content = message.location["name"] or f"{message.location['latitude']},{message.location['longitude']}"
        if content is None and message.contacts:
            content = ", ".join(card.name for card in message.contacts)
        at = datetime.fromtimestamp(message.timestamp, UTC)
        chat_id = message.chat_id if "@" in message.chat_id else f"{message.chat_id}@c.us"
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                SQL.insert_inbound_message, new_message_id(), key.company_id, key.phone_index, chat_id, message.type,
                content, media.url if media else None, media.mime_type if media else None,
                media.filename if media else None, payload, message.raw or None, message.id, message.quoted_id, at,
            )
            if row is None:
                self.duplicates += 1
                metrics.INBOUND.labels("duplicate").inc()
                return True
            if kept is not None and media_json is not None:
                await downloads.set_media(conn, row["id"], media_json["id"], media_json["state"], kept.error)
            await record_tenant_event(conn, company_id=key.company_id, phone_index=key.phone_index,
                                      type=MESSAGE_INBOUND, data={
                                          "message_id": row["message_id"], "external_id": message.id,
                                          "chat_id": chat_id, "from": message.sender, "type": message.type,
                                          "text": content, "timestamp": at.isoformat(), "provider": "wwebjs",
                                          "push_name": message.push_name, "payload": payload,
                                          "media": media_json, **_group_fields(message)},
                                      raw=message.raw or None)
            await message_store.touch_inbound_session(conn, key.company_id, key.phone_index, message.sender, at)
        self.stored += 1
        metrics.INBOUND.labels("stored").inc()
        return True

    async def on_notification(self, key: SessionKey, event: Notification) -> bool:
        """A group notification or poll vote → one tenant event (``group.participants``, ``group.updated``,
        ``message.poll_vote``; a redelivery: none). False when PostgreSQL is unavailable: left unconfirmed,
        WhatsApp delivers it again."""
        try:
            async with self.db.transaction() as conn:
                chat = event.chat_id if isinstance(event, PollVote) else event.group_id
                first = await conn.fetchval(SQL.claim_notification, key.company_id, key.phone_index, event.id, chat)
                if first is None:
                    return True
                if isinstance(event, PollVote):
                    kind: EventType = MESSAGE_POLL_VOTE
                    data = await self._poll_vote(conn, key, event)
                else:
                    kind = GROUP_PARTICIPANTS if isinstance(event, GroupParticipantsChanged) else GROUP_UPDATED
                    data = group_event_data(event)
                await record_tenant_event(conn, company_id=key.company_id, phone_index=key.phone_index, type=kind,
                                          data=data)
        except DatabaseUnavailable as exc:
            log.warning("notification %s on %s not stored (%s)", event.id, key, exc.detail)
            return False
        return True

    @staticmethod
    async def _poll_vote(conn: asyncpg.Connection, key: SessionKey, vote: PollVote) -> JsonObject:
        """Keep the voter's choice; the event: who chose what, and the poll's tallies now."""
        poll = await conn.fetchrow(SQL.sent_poll, key.company_id, key.phone_index, vote.poll_id)
        payload = poll["payload"] if poll is not None else None
        body = payload.get("poll") if isinstance(payload, dict) else None
        raw_options = body.get("options") if isinstance(body, dict) else None
        options = [str(o) for o in raw_options] if isinstance(raw_options, list) else []
        by_hash = {hashlib.sha256(o.encode()).hexdigest(): o for o in options}
        selected: list[JsonValue] = [*vote.selected] or [by_hash[h] for h in vote.selected_hashes if h in by_hash]
        await conn.execute(SQL.save_poll_vote, key.company_id, key.phone_index, vote.poll_id, vote.voter, selected)
        counts = dict.fromkeys(options, 0)
        for row in await conn.fetch(SQL.poll_votes, key.company_id, key.phone_index, vote.poll_id):
            for option in row["selected"] or []:
                counts[option] = counts.get(option, 0) + 1
        return {"message_id": poll["message_id"] if poll is not None else None, "external_id": vote.poll_id,
                "chat_id": vote.chat_id, "voter": vote.voter, "voter_lid": vote.voter_lid, "selected": selected,
                "tallies": [{"option": o, "votes": n} for o, n in counts.items()],
                "timestamp": datetime.fromtimestamp(vote.timestamp, UTC).isoformat(), "provider": "wwebjs"}

    async def on_ack(self, key: SessionKey, ack: DeliveryAck) -> bool:
        """True when applied; False when retried in the background (confirmed to WhatsApp only then)."""
        metrics.ACKS.labels(ack.level).inc()
        try:
            if await self._apply_ack(key, ack):
                return True
        except DatabaseUnavailable as exc:
            log.warning("ack %s for %s not applied (%s); retrying in the background", ack.level, ack.message_id,
                        exc.detail)
        self._spawn(self._retry_ack(key, ack), f"ack-retry:{ack.message_id}")
        return False

    async def _apply_ack(self, key: SessionKey, ack: DeliveryAck) -> bool:
        to_status = ACK_STATUS.get(ack.level)
        if to_status is None:
            return True
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(SQL.outbound_for_ack, ack.message_id, key.company_id, key.phone_index)
            if row is None:
                return False
            # A receipt that cannot move the message (a device ack after the read) is kept all
            # the same, and each fills its own column with WhatsApp's time when it gives one.
            at = datetime.fromtimestamp(ack.at, UTC) if ack.at is not None else None
            await advance_status(conn, row["id"], to_status, source=self.source, detail={"ack": ack.level},
                                 provider_status=ProviderStatus(at=at))
        return True

    async def _retry_ack(self, key: SessionKey, ack: DeliveryAck) -> None:
        """Until applied: a PostgreSQL outage does not use up the schedule (no row yet does)."""
        delays = iter(ACK_RETRY_DELAYS)
        delay = next(delays)
        outage_pause = 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                applied = await self._apply_ack(key, ack)
            except DatabaseUnavailable:
                delay = outage_pause = min(outage_pause * 2, OUTAGE_RETRY_MAX_S)
                continue
            except Exception:
                log.exception("ack %s for %s", ack.level, ack.message_id)
                applied = False
            if applied:
                if ack.confirm is not None:
                    with contextlib.suppress(Exception):
                        await ack.confirm()
                return
            next_delay = next(delays, None)
            if next_delay is None:
                break
            delay = next_delay
        # Left unconfirmed: WhatsApp (or the sandbox) sends the receipt again on the next connection.
        log.info("ack %s for %s: no outbound message with that id (yet)", ack.level, ack.message_id)

    async def close(self) -> None:
        """Give up the retries still running (what they did not store is redelivered on a later connection)."""
        for task in list(self._retries):
            task.cancel()
