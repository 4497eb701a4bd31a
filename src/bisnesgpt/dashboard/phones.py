"""Phones and sessions as the dashboard shows them, and verifying a Cloud API number.

A card's status is ``live_status`` of the engine's row (what ``/api/bot-status`` and
``phones list`` say too); its *last seen* is the phone's last message in or out.

Counts (the original's): ``total`` phones configured, ``connected`` (status ``ready``),
``meta`` (Cloud API and 360dialog), ``wwebjs``, ``disconnected`` (status ``disconnected``
or ``error``) and ``activeNow`` (phones with a message in or out in the last 15 minutes,
from the 24-hour-window table ``conversation_sessions``).

*Verify* asks the Cloud API (the emulator in development) for the number's object —
display number, verified name, quality rating, code verification and name status — with
the phone's own credentials, and records the answer in ``phone_status`` (``ready`` with the
details; ``error`` when Meta rejects the credentials, as the engine would).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, NotRequired, cast

from pydantic import JsonValue
from redis.exceptions import RedisError
from typing_extensions import TypedDict

from bisnesgpt.api.phone_sessions import (
    PhoneSession,
    load_phone_session,
    load_phone_sessions,
)
from bisnesgpt.api.schemas.common import JsonObject, iso
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import Conflict, NotFound, QueueUnavailable, ServiceUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.errors import CloudApiError, PhoneAuthError, PhoneBlockedError, TransportError
from bisnesgpt.engines.meta.pacing import Pacer
from bisnesgpt.engines.meta.phone_rates import rate_limit
from bisnesgpt.engines.meta.phones import change_phone_status
from bisnesgpt.engines.meta.profiles import META_CONNECTION_TYPES, credentials_for_phone
from bisnesgpt.engines.wwebjs.antiban import phone_sending
from bisnesgpt.engines.wwebjs.store import DesiredState
from bisnesgpt.infra.bullmq_worker import promote
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.queues import META_QUEUE
from bisnesgpt.phones import store as phones_store
from bisnesgpt.phones.live_status import live_status
from bisnesgpt.phones.store import PhoneConfig, PhoneStatus
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.dashboard")

CLOUD_TYPES = frozenset({"meta_direct", "meta_embedded", "360dialog"})
RELEASE_LIMIT = 5_000  # delayed jobs looked at when a paused phone is resumed
ACTIVE_WINDOW_MINUTES = 15
PhoneKind = Literal["wwebjs", "cloud"]


class Breaker(TypedDict):
    """A WhatsApp-Web session's circuit breaker."""

    open: bool
    reason: str | None


class Sending(TypedDict):
    """A WhatsApp-Web phone's sends today (UTC) against its caps in effect (0: no cap), and its warm-up day."""

    sentToday: int
    newChatsToday: int
    messageCap: int
    newChatCap: int
    warmupDay: int | None
    warmupDays: int


class Rate(TypedDict):
    """The phone's send rate (messages per second): its own (None: the default), the default, the one in effect."""

    configured: float | None
    default: float
    effective: float
    perPhone: bool


class PhoneCard(TypedDict):
    """A phone as the phones page shows it; the session fields for ``wwebjs``, the Cloud API ones otherwise."""

    companyId: str
    companyName: str
    phoneIndex: int
    connectionType: str
    kind: PhoneKind
    status: PhoneStatus
    configStatus: str | None
    displayNumber: str | None
    lastSeen: str | None
    statusUpdatedAt: str | None
    pausedUntil: str | None
    reason: JsonValue
    metadata: JsonObject
    orderedSends: bool
    qrAvailable: NotRequired[bool]
    pairingCode: NotRequired[JsonValue]
    desiredState: NotRequired[DesiredState]
    paired: NotRequired[bool]
    owner: NotRequired[str | None]
    breaker: NotRequired[Breaker]
    sending: NotRequired[Sending]
    lastReadyAt: NotRequired[str | None]
    metaPhoneNumberId: NotRequired[str | None]
    metaWabaId: NotRequired[str | None]
    dialog360ChannelId: NotRequired[str | None]
    verification: NotRequired[JsonValue]
    rateLimit: NotRequired[Rate]


class PhoneCounts(TypedDict):
    """The phones page's counters."""

    total: int
    connected: int
    meta: int
    wwebjs: int
    disconnected: int
    activeNow: int


class Company(TypedDict):
    """A company in the phones page's filter."""

    id: str
    name: str
    status: str


class Verification(TypedDict):
    """What the Cloud API said of a number when it was verified."""

    ok: bool
    checkedAt: str
    id: str | None
    displayPhoneNumber: str | None
    verifiedName: str | None
    qualityRating: str | None
    codeVerificationStatus: str | None
    nameStatus: str | None


def phone_card(phone: PhoneSession) -> PhoneCard:
    """A phone's card: status and number; the session for a wwebjs phone, the Meta ids for a Cloud API one."""
    metadata = phone.shown_metadata()
    card: PhoneCard = {
        "companyId": phone.company_id, "companyName": phone.company_name, "phoneIndex": phone.phone_index,
        "connectionType": phone.connection_type, "kind": "wwebjs" if phone.is_wwebjs else "cloud",
        "status": phone.status, "configStatus": phone.config_status, "displayNumber": phone.number,
        # Last seen: the phone's last message in or out, not when its status was last written.
        "lastSeen": iso(phone.last_activity), "statusUpdatedAt": iso(phone.status_updated_at),
        "pausedUntil": iso(phone.paused_until), "reason": phone.reason,
        "metadata": metadata, "orderedSends": phone.ordered_sends,
    }
    if phone.is_wwebjs:
        card["qrAvailable"] = phone.qr_available
        card["pairingCode"] = phone.pairing_code
        card["desiredState"] = phone.desired_state
        card["paired"] = phone.paired
        card["owner"] = phone.owner
        card["breaker"] = {"open": phone.breaker_tripped_at is not None, "reason": phone.breaker_reason}
        card["lastReadyAt"] = iso(phone.last_ready_at)
    else:
        card["metaPhoneNumberId"] = phone.meta_phone_number_id
        card["metaWabaId"] = phone.meta_waba_id
        card["dialog360ChannelId"] = phone.dialog360_channel_id
        card["verification"] = metadata.get("verification")
    return card


def counts(cards: list[PhoneCard], active_now: int) -> PhoneCounts:
    """The counters over these cards (``activeNow`` comes from the conversations)."""
    return {
        "total": len(cards),
        "connected": sum(c["status"] == "ready" for c in cards),
        "meta": sum(c["connectionType"] in CLOUD_TYPES for c in cards),
        "wwebjs": sum(c["connectionType"] == "wwebjs" for c in cards),
        "disconnected": sum(c["status"] in ("disconnected", "error") for c in cards),
        "activeNow": active_now,
    }


async def list_phones(db: Database, company_id: str | None, phone_index: int | None = None, *,
                      settings: Settings | None = None) -> tuple[list[PhoneCard], PhoneCounts]:
    """The cards of a company's phones (None: every company's), or of one, with the counters.

    With ``settings``, a WhatsApp-Web card carries its sends today against its caps (the same
    answer as the ``sending`` block of ``GET /api/sessions/{company}/{phone}``).
    """
    async with db.connection() as conn:
        phones = await load_phone_sessions(conn, company_id, phone_index)
        active = int(await conn.fetchval(SQL.active_phones, company_id, ACTIVE_WINDOW_MINUTES) or 0)
        cards = []
        for p in phones:
            card = phone_card(p)
            if settings is not None:
                rate = rate_limit(settings, p.connection_type, p.settings)
                card["rateLimit"] = {"configured": rate.configured, "default": rate.default,
                                     "effective": rate.effective, "perPhone": rate.per_phone}
            if settings is not None and p.is_wwebjs:
                today = await phone_sending(conn, settings, p.company_id, p.phone_index)
                card["sending"] = {"sentToday": today.sent_today, "newChatsToday": today.new_chats_today,
                                   "messageCap": today.message_cap, "newChatCap": today.new_chat_cap,
                                   "warmupDay": today.warmup_day, "warmupDays": today.warmup_days}
            cards.append(card)
    return cards, counts(cards, active)


async def companies(db: Database, company_id: str | None) -> list[Company]:
    """The company (or every company) for the page's filter."""
    rows = await db.fetch(SQL.companies, company_id)
    return [{"id": r["id"], "name": r["name"], "status": r["status"]} for r in rows]


async def one_phone(db: Database, company_id: str, phone_index: int) -> PhoneSession:
    """One phone (404 if it is not configured)."""
    async with db.connection() as conn:
        return await load_phone_session(conn, company_id, phone_index)


async def qr_data_url(db: Database, company_id: str, phone_index: int) -> str:
    """The QR code to scan as a PNG data URL (404 while the session shows none)."""
    phone = await one_phone(db, company_id, phone_index)
    if phone.qr_code is None:
        raise NotFound(f"no QR code: the session is {phone.status}")
    return phone.qr_code


async def _cloud_phone(ctx: ProcessContext, company_id: str, phone_index: int, types: frozenset[str],
                       only: str) -> PhoneConfig:
    """The phone's configuration: 404 if it is not configured, 409 (saying ``only``) if not one of ``types``."""
    async with ctx.db.connection() as conn:
        phone = await phones_store.get_phone(conn, company_id, phone_index)
    if phone is None:
        raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
    if phone.connection_type not in types:
        raise Conflict(f"phone {phone_index} uses {phone.connection_type or 'wwebjs'!r}: {only}")
    return phone


async def verify_cloud_phone(ctx: ProcessContext, company_id: str, phone_index: int) -> Verification:
    """Ask the Cloud API for the number's status and quality; record it; return what Meta said."""
    settings = ctx.settings
    phone = await _cloud_phone(ctx, company_id, phone_index, META_CONNECTION_TYPES,
                               "verify asks Meta's Graph API about a Cloud API number (meta_direct / meta_embedded)")
    try:
        creds = credentials_for_phone(settings, secret_box(settings), phone)
    except PermanentSendError as exc:
        raise Conflict(f"cannot verify: {exc.provider_title}") from exc
    checked_at = datetime.now(UTC).isoformat()
    try:
        async with CloudApiClient(timeout=settings.meta_http_timeout,
                                  connect_timeout=settings.meta_http_connect_timeout) as client:
            info = await client.get_phone_number(creds)
    except TransportError as exc:
        raise ServiceUnavailable(f"the Cloud API did not answer: {exc.detail}") from exc
    except CloudApiError as exc:
        if isinstance(exc, PhoneAuthError | PhoneBlockedError):
            reason = f"verify: Cloud API rejected the number ({exc.code_text}): {exc.error_title}"
            async with ctx.db.transaction() as conn:
                await change_phone_status(conn, phone, "error", reason=reason, code=exc.code_text,
                                          extra={"verification": {"ok": False, "code": exc.code_text,
                                                                  "title": exc.error_title, "checkedAt": checked_at}})
        raise Conflict(f"the Cloud API refused ({exc.code_text}): {exc.error_title}",
                       extra={"code": exc.code_text}) from exc
    verification: Verification = {
        "ok": True, "checkedAt": checked_at, "id": info.get("id"),
        "displayPhoneNumber": info.get("display_phone_number"), "verifiedName": info.get("verified_name"),
        "qualityRating": info.get("quality_rating"), "codeVerificationStatus": info.get("code_verification_status"),
        "nameStatus": info.get("name_status"),
    }
    stored = cast("JsonObject", verification)  # a TypedDict of JSON values is a JSON object
    async with ctx.db.transaction() as conn:
        current = await phones_store.get_phone_status(conn, company_id, phone_index)
        if current is not None and live_status(current["status"], current["metadata"] or {}).status == "paused":
            # The number is fine as Meta sees it, but its sending is still paused: verify never hides that.
            await phones_store.set_phone_status(conn, company_id, phone_index, "paused",
                                                metadata={**(current["metadata"] or {}), "verification": stored},
                                                connection_type=phone.connection_type, process_name="meta")
            await ctx.events.record("dashboard.phone.verify", {"companyId": company_id, "phoneIndex": phone_index,
                                                               "qualityRating": verification["qualityRating"],
                                                               "paused": True})
            return verification
        await change_phone_status(conn, phone, "ready", reason="verified with the Cloud API",
                                  extra={"verification": stored})
        # change_phone_status writes only on a change; keep the latest check visible regardless.
        await phones_store.set_phone_status(conn, company_id, phone_index, "ready",
                                            metadata={"reason": "verified with the Cloud API",
                                                      "verification": stored},
                                            phone_number=info.get("display_phone_number"),
                                            connection_type=phone.connection_type, process_name="meta")
    await ctx.events.record("dashboard.phone.verify", {"companyId": company_id, "phoneIndex": phone_index,
                                                       "qualityRating": verification["qualityRating"]})
    return verification


class Resumed(TypedDict):
    """A Cloud API phone's sending pause ended by an operator, and how many held messages were released."""

    companyId: str
    phoneIndex: int
    resumed: bool
    released: int


async def resume_cloud_phone(ctx: ProcessContext, company_id: str, phone_index: int, *, by: str) -> Resumed:
    """End a Cloud API phone's sending pause now: the pacer's hold, the phone's status and its waiting jobs.

    The messages the pause held wait as delayed jobs (delayed until the pause's end); they
    are promoted so that they go now, in the order the pacer lets them.
    """
    phone = await _cloud_phone(ctx, company_id, phone_index, CLOUD_TYPES,
                               "only Cloud API / 360dialog phones are paused by the Cloud API engine")
    await Pacer(ctx.redis).resume_phone(company_id, phone_index)
    released = await _release_held_jobs(ctx, company_id, phone_index)
    async with ctx.db.transaction() as conn:
        await change_phone_status(conn, phone, "pending",
                                  reason=f"sending resumed by {by}; the phone shows connected once a message goes out")
    await ctx.events.record("dashboard.phone.resume", {"companyId": company_id, "phoneIndex": phone_index, "by": by,
                                                       "released": released}, "warning")
    return {"companyId": company_id, "phoneIndex": phone_index, "resumed": True, "released": released}


async def _release_held_jobs(ctx: ProcessContext, company_id: str, phone_index: int) -> int:
    """Promote the phone's delayed send jobs (up to RELEASE_LIMIT); how many moved."""
    queue = ctx.queues.queue(META_QUEUE)
    try:
        jobs = await queue.getJobs(["delayed"], 0, RELEASE_LIMIT - 1)
        mine = [str(job.id) for job in jobs if (job.data or {}).get("companyId") == company_id
                and (job.data or {}).get("phoneIndex") == phone_index]
        return await promote(queue.backend, mine)
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"releasing the held messages: Redis unavailable ({exc})") from exc
