"""Applying Cloud API webhooks: the processor of the ``webhook-events`` queue.

Jobs are what the webhook routes enqueued (``kind: meta-webhook``, the raw body as
received) or status retries this processor scheduled itself (``kind: meta-status-retry``).

* inbound messages of every type become ``messages`` rows (direction ``inbound``, the
  provider's message kept in ``payload`` and the change in ``raw``), deduplicated on the
  provider id; the 24-hour window is touched; a ``message.inbound`` tenant event is written;
* inbound media (image, video, audio, document, sticker) gets a media object id and a
  ``media-downloads`` job (``media_downloads.py`` fetches the bytes); ``data.media`` of the
  event names the id, a signed URL and ``state: pending``;
* statuses move the outbound message found by ``external_id`` forward only
  (``advance_status`` writes history and the ``message.status`` event); one that cannot move
  it (the ``sent`` after the send call returned, a ``delivered`` after ``read``, a duplicate)
  is kept in the history all the same and fills its own timestamp column with Meta's time;
  ``pricing`` and ``conversation`` are kept on the message; ``failed`` keeps ``errors[]``;
* a status for a wamid not recorded yet (the send's database update can lose the race with
  Meta's ``sent`` webhook) is retried with growing delays for ``META_STATUS_RETRY_SECONDS``
  and, if still unmatched, recorded as a warning event — never dropped silently;
* ``account_update`` ``PARTNER_REMOVED`` marks the WABA's phones ``disconnected``;
* every other change is kept in ``meta_webhook_changes``;
* routing never guesses: an item is applied to a phone only when its identities (360dialog
  channel, phone_number_id, and for 360dialog the display number) name exactly one phone. An
  inbound message or change that names none, or several, is kept aside in
  ``meta_webhook_changes`` (``routing`` unmatched / ambiguous, with the candidates) and a
  warning event says so — never stored under a company. ``bisnesgpt inbound unrouted`` lists them.

Each item is applied in its own transaction, so a job that is retried (or a webhook Meta
delivers twice) only fills in what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Final, Literal, TypedDict

from bullmq.custom_errors import DelayedError, UnrecoverableError

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import BisnesgptError, DatabaseUnavailable, QueueUnavailable
from bisnesgpt.core.ids import new_event_id, new_message_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.core.storable import storable
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.meta.media_downloads import media_downloads_spec
from bisnesgpt.engines.meta.metrics import WEBHOOK_ITEMS
from bisnesgpt.engines.meta.phones import (
    WebhookRoute,
    change_phone_status,
    phone_for_webhook,
    phones_by_waba_id,
    waba_route,
)
from bisnesgpt.engines.meta.webhook_parse import (
    MEDIA_TYPES,
    ChangeItem,
    InboundItem,
    Item,
    Source,
    StatusItem,
    as_dict,
    describe_inbound,
    message_timestamp,
    parse_payload,
    status_timestamp,
)
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.media import downloads
from bisnesgpt.media.signing import MediaUrlSigner
from bisnesgpt.messaging import store
from bisnesgpt.messaging.events import MESSAGE_INBOUND, record_tenant_event
from bisnesgpt.messaging.queues import WEBHOOK_EVENTS, QueueProducer
from bisnesgpt.messaging.send_processor import JobHandle
from bisnesgpt.messaging.states import ProviderStatus, advance_status
from bisnesgpt.phones.store import PhoneConfig

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.engines.meta")

WEBHOOK_KIND: Final = "meta-webhook"
STATUS_RETRY_KIND: Final = "meta-status-retry"
FIRST_RETRY_MS = 250
STATUS_DETAIL_KEYS = ("timestamp", "recipient_id", "conversation", "pricing", "biz_opaque_callback_data")
MAX_RETRY_DELAY_MS = 10_000
PHONE_CACHE_SECONDS = 5.0


class WebhookJob(TypedDict):
    """A ``webhook-events`` job the webhook routes enqueue: one POST, its body as received."""

    kind: Literal["meta-webhook"]
    provider: str
    body: str
    receivedAt: float
    channel: str | None


class StatusRetryJob(TypedDict):
    """A ``webhook-events`` job this processor schedules: a status whose message was not found yet."""

    kind: Literal["meta-status-retry"]
    provider: str
    wabaId: str | None
    metadata: JsonObject
    status: JsonObject
    channel: str | None
    firstSeenMs: int


class JobResult(TypedDict, total=False):
    """What a ``webhook-events`` job answers (bullmq keeps it as the job's return value)."""

    outcome: str
    items: dict[str, int]


class WebhookProcessor:
    """Processor of ``webhook-events`` jobs (see module docstring)."""

    def __init__(self, db: Database, queues: QueueProducer, events: EventRecorder, settings: Settings) -> None:
        self.db = db
        self.queues = queues
        self.events = events
        self.settings = settings
        self.signer = MediaUrlSigner.from_settings(settings)
        self.media_spec = media_downloads_spec(settings)
        self.processed = 0
        # Which phone a webhook names, cached briefly: a burst of statuses names the same few.
        self._phones: dict[tuple[str, str | None, str, str], tuple[float, WebhookRoute]] = {}

    async def __call__(self, job: JobHandle, token: str) -> JobResult:
        """bullmq's processor contract: apply a raw webhook or retry a status, by the job's ``kind``."""
        data: JsonObject = job.data or {}
        kind = data.get("kind")
        if kind == WEBHOOK_KIND:
            result = await self.process_webhook(data)
        elif kind == STATUS_RETRY_KIND:
            result = await self._retry_status(job, token, data)
        else:
            raise UnrecoverableError(f"unknown webhook-events job kind {kind!r}")
        self.processed += 1
        return result

    # --- raw webhooks -----------------------------------------------------------------------------

    async def process_webhook(self, data: JsonObject) -> JobResult:
        """Apply every item of one webhook POST (a ``WebhookJob``'s data); how many ended which way."""
        provider = str(data.get("provider") or "meta")
        payload = _json_body(data.get("body"))
        counts: dict[str, int] = {}
        for item in parse_payload(payload, provider):
            outcome = await self._apply_guarded(item, _text(data.get("channel")))
            counts[outcome] = counts.get(outcome, 0) + 1
        return {"outcome": "processed", "items": counts}

    async def _apply_guarded(self, item: Item, channel: str | None) -> str:
        kind = type(item).__name__.removesuffix("Item").lower()
        try:
            outcome = await self._apply(item, channel)
        except (DatabaseUnavailable, QueueUnavailable):
            raise  # the job is retried; items already applied are idempotent
        except BisnesgptError as exc:
            outcome = "error"
            await self.events.record("meta.webhook.item_failed", {"kind": kind, "error": exc.detail}, "error")
        except Exception as exc:  # one odd item must not stop the rest of the webhook
            outcome = "error"
            log.exception("applying a %s webhook item failed", kind)
            await self.events.record("meta.webhook.item_failed", {"kind": kind, "error": repr(exc)[:500]}, "error")
        WEBHOOK_ITEMS.labels(kind, outcome).inc()
        return outcome

    async def _route(self, source: Source, channel: str | None) -> WebhookRoute:
        key = (source.provider, channel, source.phone_number_id or "", source.display_phone_number)
        cached = self._phones.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < PHONE_CACHE_SECONDS:
            return cached[1]
        async with self.db.connection() as conn:
            route = await phone_for_webhook(conn, source.provider, channel=channel,
                                            phone_number_id=source.phone_number_id or "",
                                            display_phone_number=source.display_phone_number)
        if route.phone is not None:  # a phone configured a moment ago must not stay "unknown"
            if len(self._phones) > 10_000:
                self._phones.clear()
            self._phones[key] = (now, route)
        return route

    async def _phone(self, source: Source, channel: str | None) -> PhoneConfig | None:
        return (await self._route(source, channel)).phone

    async def _apply(self, item: Item, channel: str | None) -> str:
        route = await self._route(item.source, channel)
        phone = route.phone
        if isinstance(item, InboundItem):
            if phone is None:
                await self._keep_unrouted(item.source, {"message": item.message, "profile": item.profile}, route)
                return "unknown_phone" if route.routing == "unmatched" else "ambiguous_phone"
            return await self._apply_inbound(item, phone)
        if isinstance(item, StatusItem):
            outcome = await self._apply_status(item, phone)
            if outcome == "unmatched":
                await self._schedule_status_retry(item, channel)
                return "retry_scheduled"
            return outcome
        return await self._apply_change(item, route)

    # --- inbound ------------------------------------------------------------------------------

    async def _apply_inbound(self, item: InboundItem, phone: PhoneConfig) -> str:
        message = item.message
        sender, external_id, provider = item.sender, item.external_id, item.source.provider
        fields = describe_inbound(message)
        at = message_timestamp(message)
        raw: JsonObject = {"waba_id": item.source.waba_id, "field": item.source.field,
                           "metadata": item.source.metadata,
                           "contact": {"wa_id": message.get("from"), "profile": item.profile}, "message": message}
        payload = dict(message)  # the provider's message as received (sha256, referral, errors… all kept)
        download: tuple[int, str] | None = None
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                SQL.insert_inbound_message, new_message_id(), phone.company_id, phone.phone_index, provider,
                phone.connection_type, f"{sender}@c.us", fields.message_type, fields.content, fields.media_url,
                fields.media_id, fields.media_mime_type, fields.media_filename, payload, raw, external_id,
                fields.context_message_id, f"{provider}-webhook", at,
            )
            if sender:
                await store.touch_inbound_session(conn, phone.company_id, phone.phone_index, sender, at)
            if row is None:
                # A redelivery: its download may never have been queued (Redis was down then).
                pending = await downloads.pending_download_of(conn, phone.company_id, phone.phone_index,
                                                              external_id or "")
            else:
                pending = None
                media: dict[str, object] | None = None
                if fields.media_id and fields.message_type in MEDIA_TYPES:
                    media_id = await downloads.begin(conn, row["id"])
                    download = (int(row["id"]), media_id)
                    media = {**downloads.pending_media(self.signer, phone.company_id, media_id,
                                                       mime_type=fields.media_mime_type,
                                                       filename=fields.media_filename),
                             "provider_media_id": fields.media_id, "provider_sha256": fields.media_sha256}
                elif fields.media_id or fields.media_url:
                    media = {"id": None, "provider_media_id": fields.media_id, "url": fields.media_url,
                             "mime_type": fields.media_mime_type, "filename": fields.media_filename,
                             "sha256": fields.media_sha256, "state": "failed",
                             "error": "not a downloadable media type"}
                await record_tenant_event(
                    conn, company_id=phone.company_id, phone_index=phone.phone_index, type=MESSAGE_INBOUND,
                    data={
                        "message_id": row["message_id"], "external_id": external_id, "chat_id": f"{sender}@c.us",
                        # The Cloud API names senders by number (wa_id); it has no LIDs.
                        "from": sender, "from_number": sender, "from_lid": None,
                        "contact_name": item.contact_name, "type": fields.message_type,
                        "content": fields.content, "timestamp": at.isoformat(), "provider": provider,
                        "context_message_id": fields.context_message_id, "media": media,
                    },
                    raw=message,
                )
        download = download or pending
        if download is not None:
            pk, media_id = download
            await self.queues.add(self.media_spec, f"media-{pk}",
                                  dict(downloads.job_for(pk, phone.company_id, media_id)))
        return "duplicate" if row is None else "stored"

    # --- statuses -----------------------------------------------------------------------------

    async def _apply_status(self, item: StatusItem, phone: PhoneConfig | None) -> str:
        to_status = item.our_status
        if to_status is None or not item.wamid:
            route = WebhookRoute("routed", phone) if phone is not None else WebhookRoute("unmatched")
            await self._apply_change(ChangeItem(item.source, {"status": item.status}), route)
            return "kept"
        errors = item.errors
        first_error = as_dict(errors[0]) if errors else {}
        detail = {k: item.status[k] for k in STATUS_DETAIL_KEYS if k in item.status}
        async with self.db.transaction() as conn:
            message = await store.find_outbound_by_external_id(conn, item.wamid)
            if message is None:
                return "unmatched"
            if phone is not None and message.company_id != phone.company_id:
                log.warning("status for %s names phone %s of another company; ignored", item.wamid,
                            item.source.phone_number_id)
                return "foreign"
            transition = await advance_status(
                conn, message.id, to_status, source=f"{item.source.provider}-webhook", detail=detail,
                error_code=str(first_error["code"]) if first_error.get("code") is not None else None,
                error_title=str(first_error.get("title") or first_error.get("message") or "") or None,
                error_details=errors, raw=item.status, provider_status=ProviderStatus(
                    at=status_timestamp(item.status), pricing=_object(item.status.get("pricing")),
                    conversation=_object(item.status.get("conversation"))),
            )
        if transition.changed:
            return "applied"
        return "recorded" if transition.recorded else "unchanged"

    async def _schedule_status_retry(self, item: StatusItem, channel: str | None) -> None:
        job = StatusRetryJob(kind=STATUS_RETRY_KIND, provider=item.source.provider, wabaId=item.source.waba_id,
                             metadata=item.source.metadata, status=item.status, channel=channel,
                             firstSeenMs=int(time.time() * 1000))
        await self.queues.add(WEBHOOK_EVENTS, f"status-retry-{new_event_id()}", dict(job), delay_ms=FIRST_RETRY_MS)

    async def _retry_status(self, job: JobHandle, token: str, data: JsonObject) -> JobResult:
        source = Source(str(data.get("provider") or "meta"), _text(data.get("wabaId")), as_dict(data.get("metadata")),
                        "messages")
        item = StatusItem(source, as_dict(data.get("status")))
        phone = await self._phone(source, _text(data.get("channel")))
        outcome = await self._apply_status(item, phone)
        if outcome != "unmatched":
            WEBHOOK_ITEMS.labels("status_retry", outcome).inc()
            return {"outcome": outcome}
        now_ms = int(time.time() * 1000)
        first_seen = data.get("firstSeenMs")
        elapsed = now_ms - (int(first_seen) if isinstance(first_seen, int | float) and first_seen else now_ms)
        if elapsed < self.settings.meta_status_retry_seconds * 1000:
            delay = min(MAX_RETRY_DELAY_MS, max(FIRST_RETRY_MS, elapsed // 2))
            await job.moveToDelayed(now_ms + delay, token)
            raise DelayedError(f"wamid {item.wamid} not recorded yet")
        WEBHOOK_ITEMS.labels("status_retry", "unmatched").inc()
        await self.events.record("meta.status.unmatched", {
            "wamid": item.wamid, "status": item.status.get("status"), "phoneNumberId": source.phone_number_id,
            "waitedSeconds": round(elapsed / 1000, 1),
        }, "warning")
        return {"outcome": "unmatched"}

    # --- everything else ----------------------------------------------------------------------

    async def _apply_change(self, item: ChangeItem, route: WebhookRoute) -> str:
        source = item.source
        if route.phone is None and route.routing == "unmatched" and source.waba_id:
            # Account-level changes (templates, account updates) name only the WABA.
            async with self.db.connection() as conn:
                route = await waba_route(conn, source.waba_id)
        if route.routing != "routed":
            await self._warn_unrouted(source, route)
        stored = await self._keep_change(source, item.value, route)
        if source.field == "account_update" and str(item.value.get("event") or "") == "PARTNER_REMOVED":
            await self._partner_removed(source, item.value)
        if isinstance(item.value.get("errors"), list):
            await self.events.record("meta.webhook.errors", {"field": source.field, "errors": item.value["errors"],
                                                             "phoneNumberId": source.phone_number_id}, "warning")
        return "stored" if stored else "duplicate"

    async def _keep_unrouted(self, source: Source, value: JsonObject, route: WebhookRoute) -> None:
        await self._warn_unrouted(source, route)
        await self._keep_change(source.under(f"{source.field}.unrouted"), value, route)

    async def _warn_unrouted(self, source: Source, route: WebhookRoute) -> None:
        event = "meta.webhook.unknown_phone" if route.routing == "unmatched" else "meta.webhook.ambiguous_phone"
        await self.events.record(event, {
            "provider": source.provider, "phoneNumberId": source.phone_number_id, "wabaId": source.waba_id,
            "displayPhoneNumber": source.display_phone_number, "field": source.field, "reason": route.reason,
            "candidates": route.candidates_json(),
            "action": "kept aside, stored under no company: `bisnesgpt inbound unrouted` lists it"}, "warning")

    async def _keep_change(self, source: Source, value: JsonObject, route: WebhookRoute) -> bool:
        canonical = json.dumps([source.waba_id, source.field, value], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        phone = route.phone
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                SQL.keep_webhook_change, source.provider, phone.company_id if phone else None,
                phone.phone_index if phone else None, source.waba_id, source.phone_number_id, source.field, value,
                digest, route.routing, route.candidates_json() or None,
            )
        return row is not None

    async def _partner_removed(self, source: Source, value: JsonObject) -> None:
        waba_info = as_dict(value.get("waba_info"))
        waba_id = str(waba_info.get("waba_id") or source.waba_id or "")
        if not waba_id:
            return
        async with self.db.transaction() as conn:
            phones = await phones_by_waba_id(conn, waba_id)
            for phone in phones:
                await change_phone_status(conn, phone, "disconnected", reason="PARTNER_REMOVED",
                                          code="PARTNER_REMOVED", extra={"wabaId": waba_id})
        for phone in phones:
            await self.events.record("meta.phone.partner_removed", {
                "companyId": phone.company_id, "phoneIndex": phone.phone_index, "wabaId": waba_id}, "warning")


def _json_body(body: JsonValue) -> JsonValue:
    """The webhook's JSON, parsed and made storable; a job without a JSON body can never succeed."""
    if not isinstance(body, str):
        raise UnrecoverableError(f"webhook body is not JSON: the job's body is {type(body).__name__}")
    try:
        parsed: JsonValue = json.loads(body)
    except ValueError as exc:
        raise UnrecoverableError(f"webhook body is not JSON: {exc}") from exc
    # NUL and lone surrogates cannot be stored: replaced, with the originals kept escaped.
    return storable(parsed)


def _object(value: JsonValue) -> JsonObject | None:
    return value if isinstance(value, dict) else None


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None
