"""Phones and sessions as the dashboard shows them, and verifying a Cloud API number.

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
from typing import Any

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import Conflict, NotFound, ServiceUnavailable
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.errors import CloudApiError, PhoneAuthError, PhoneBlockedError, TransportError
from bisnesgpt.engines.meta.phones import change_phone_status
from bisnesgpt.engines.meta.profiles import META_CONNECTION_TYPES, credentials_for_phone
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.phones import store as phones_store
from bisnesgpt.processes.context import ProcessContext

CLOUD_TYPES = frozenset({"meta_direct", "meta_embedded", "360dialog"})
ACTIVE_WINDOW_MINUTES = 15
HIDDEN_METADATA = frozenset({"qrCode"})

PHONES = """
SELECT pc.company_id, c.name AS company_name, pc.phone_index, coalesce(pc.connection_type, 'wwebjs') AS connection_type,
       pc.status AS config_status, pc.display_phone_number, pc.meta_phone_number_id, pc.meta_waba_id,
       pc.dialog360_channel_id, pc.process_name, pc.updated_at AS config_updated_at,
       coalesce(ps.status, 'pending') AS status, ps.phone_number, ps.last_seen,
       coalesce(ps.metadata, '{}'::jsonb) AS metadata, ps.updated_at AS status_updated_at,
       ws.desired_state, ws.breaker_tripped_at, ws.breaker_reason, ws.last_ready_at,
       (ws.auth_state IS NOT NULL) AS paired,
       pl.holder AS owner
FROM phone_configs pc
JOIN companies c ON c.id = pc.company_id
LEFT JOIN phone_status ps ON ps.company_id = pc.company_id AND ps.phone_index = pc.phone_index
LEFT JOIN wwebjs_sessions ws ON ws.company_id = pc.company_id AND ws.phone_index = pc.phone_index
LEFT JOIN process_leases pl ON pl.name = 'wwebjs:session:' || pc.company_id || ':' || pc.phone_index
                           AND pl.expires_at > now()
WHERE ($1::text IS NULL OR pc.company_id = $1) AND ($2::int IS NULL OR pc.phone_index = $2)
ORDER BY pc.company_id, pc.phone_index
"""
ACTIVE_NOW = f"""
SELECT count(DISTINCT (company_id, phone_index)) FROM conversation_sessions
WHERE ($1::text IS NULL OR company_id = $1)
  AND greatest(last_inbound_at, last_outbound_at) > now() - interval '{ACTIVE_WINDOW_MINUTES} minutes'
"""
COMPANIES = "SELECT id, name, status FROM companies WHERE ($1::text IS NULL OR id = $1) ORDER BY id"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def phone_view(row: Any) -> dict[str, Any]:
    metadata = {k: v for k, v in dict(row["metadata"] or {}).items() if k not in HIDDEN_METADATA}
    status = row["status"]
    kind = "wwebjs" if row["connection_type"] == "wwebjs" else "cloud"
    view: dict[str, Any] = {
        "companyId": row["company_id"], "companyName": row["company_name"], "phoneIndex": row["phone_index"],
        "connectionType": row["connection_type"], "kind": kind, "status": status,
        "configStatus": row["config_status"],
        "displayNumber": row["phone_number"] or row["display_phone_number"],
        "lastSeen": _iso(row["last_seen"]), "statusUpdatedAt": _iso(row["status_updated_at"]),
        "reason": metadata.get("reason") or metadata.get("error"),
        "metadata": metadata,
    }
    if kind == "wwebjs":
        view.update({
            "qrAvailable": status == "qr" and bool((row["metadata"] or {}).get("qrCode")),
            "pairingCode": metadata.get("pairingCode") if status == "pairing_code" else None,
            "desiredState": row["desired_state"] or "running", "paired": bool(row["paired"]),
            "owner": row["owner"],
            "breaker": {"open": row["breaker_tripped_at"] is not None, "reason": row["breaker_reason"]},
            "lastReadyAt": _iso(row["last_ready_at"]),
        })
    else:
        view.update({
            "metaPhoneNumberId": row["meta_phone_number_id"], "metaWabaId": row["meta_waba_id"],
            "dialog360ChannelId": row["dialog360_channel_id"],
            "verification": metadata.get("verification"),
        })
    return view


def counts(views: list[dict[str, Any]], active_now: int) -> dict[str, int]:
    return {
        "total": len(views),
        "connected": sum(v["status"] == "ready" for v in views),
        "meta": sum(v["connectionType"] in CLOUD_TYPES for v in views),
        "wwebjs": sum(v["connectionType"] == "wwebjs" for v in views),
        "disconnected": sum(v["status"] in ("disconnected", "error") for v in views),
        "activeNow": active_now,
    }


async def list_phones(ctx: ProcessContext, company_id: str | None, phone_index: int | None = None) \
        -> tuple[list[dict[str, Any]], dict[str, int]]:
    async with ctx.db.connection() as conn:
        rows = await conn.fetch(PHONES, company_id, phone_index)
        active = int(await conn.fetchval(ACTIVE_NOW, company_id) or 0)
    views = [phone_view(r) for r in rows]
    return views, counts(views, active)


async def companies(ctx: ProcessContext, company_id: str | None) -> list[dict[str, Any]]:
    rows = await ctx.db.fetch(COMPANIES, company_id)
    return [{"id": r["id"], "name": r["name"], "status": r["status"]} for r in rows]


async def one_phone(ctx: ProcessContext, company_id: str, phone_index: int) -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        row = await conn.fetchrow(PHONES, company_id, phone_index)
    if row is None:
        raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
    return dict(row)


async def qr_data_url(ctx: ProcessContext, company_id: str, phone_index: int) -> str:
    row = await one_phone(ctx, company_id, phone_index)
    qr = (row["metadata"] or {}).get("qrCode")
    if row["status"] != "qr" or not isinstance(qr, str) or not qr:
        raise NotFound(f"no QR code: the session is {row['status']}")
    return qr


async def verify_cloud_phone(ctx: ProcessContext, settings: Settings, company_id: str, phone_index: int) \
        -> dict[str, Any]:
    """Ask the Cloud API for the number's status and quality; record it; return what Meta said."""
    async with ctx.db.connection() as conn:
        phone = await phones_store.get_phone(conn, company_id, phone_index)
    if phone is None:
        raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
    if phone.connection_type not in META_CONNECTION_TYPES:
        raise Conflict(f"phone {phone_index} uses {phone.connection_type or 'wwebjs'!r}: verify asks Meta's Graph API "
                       "about a Cloud API number (meta_direct / meta_embedded)")
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
    verification = {
        "ok": True, "checkedAt": checked_at, "id": info.get("id"),
        "displayPhoneNumber": info.get("display_phone_number"), "verifiedName": info.get("verified_name"),
        "qualityRating": info.get("quality_rating"), "codeVerificationStatus": info.get("code_verification_status"),
        "nameStatus": info.get("name_status"),
    }
    async with ctx.db.transaction() as conn:
        await change_phone_status(conn, phone, "ready", reason="verified with the Cloud API",
                                  extra={"verification": verification})
        # change_phone_status writes only on a change; keep the latest check visible regardless.
        await phones_store.set_phone_status(conn, company_id, phone_index, "ready",
                                            metadata={"reason": "verified with the Cloud API",
                                                      "verification": verification},
                                            phone_number=info.get("display_phone_number"),
                                            connection_type=phone.connection_type, process_name="meta")
    await ctx.events.record("dashboard.phone.verify", {"companyId": company_id, "phoneIndex": phone_index,
                                                       "qualityRating": verification["qualityRating"]})
    return verification
