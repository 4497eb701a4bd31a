"""Phone configuration (the original ``/api/whatsapp/*`` routes) and ``/api/bot-status``.

Credentials go in, never out: responses and logs show only whether a secret is set.
"""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Body, Path, Query
from pydantic import JsonValue

from bisnesgpt.api.auth import AdminPrincipal, CurrentPrincipal
from bisnesgpt.api.schemas import phones as models
from bisnesgpt.api.schemas.antiban import SendingTodayView
from bisnesgpt.api.schemas.common import (
    COMPANY_ID_PATTERN,
    MAX_PHONE_INDEX,
    CompanyPath,
    JsonObject,
    problem_responses,
)
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import NotFound
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.phone_rates import rate_limit
from bisnesgpt.engines.wwebjs.antiban import SendingToday, phone_sending
from bisnesgpt.messaging.queues import CONNECTION_TYPE_QUEUES
from bisnesgpt.phones import store
from bisnesgpt.phones.live_status import live_status
from bisnesgpt.phones.service import META_TYPES, PhoneConfigService
from bisnesgpt.phones.store import CompanyPhoneStatus, PhoneConfig
from bisnesgpt.tenancy import store as tenancy

QR_DATA_URL_PREFIX = "data:image/"


def _queue_name(connection_type: str | None) -> str | None:
    spec = CONNECTION_TYPE_QUEUES.get(connection_type)
    return spec.name if spec else None


def phone_row(config: PhoneConfig) -> models.PhoneConfigRow:
    """A phone's configuration as the original's ``/api/whatsapp/config`` rows (secrets only as has_*)."""
    return models.PhoneConfigRow(
        company_id=config.company_id, phone_index=config.phone_index,
        connection_type=config.connection_type or "wwebjs", process_name=config.process_name,
        queue_name=_queue_name(config.connection_type), status=config.status,
        display_phone_number=config.display_phone_number, meta_phone_number_id=config.meta_phone_number_id,
        meta_waba_id=config.meta_waba_id, dialog360_client_id=config.dialog360_client_id,
        dialog360_channel_id=config.dialog360_channel_id,
        has_access_token=config.meta_access_token_encrypted is not None,
        has_api_key=config.api_key_encrypted is not None, ordered_sends=config.ordered_sends,
        created_at=config.created_at.isoformat(), updated_at=config.updated_at.isoformat(),
    )


def saved(config: PhoneConfig) -> models.PhoneConfigSaved:
    """The answer to a connect / onboard: the phone's route (process, queue) and status."""
    return models.PhoneConfigSaved(
        success=True, companyId=config.company_id, phoneIndex=config.phone_index,
        connectionType=config.connection_type or "wwebjs", processName=config.process_name,
        queueName=_queue_name(config.connection_type), displayPhoneNumber=config.display_phone_number,
        status=config.status)


def qr_data_url(qr: JsonValue) -> str | None:
    """The QR code as a PNG data URL (engines may store the raw QR payload or the data URL)."""
    if not isinstance(qr, str) or not qr:
        return None
    if qr.startswith(QR_DATA_URL_PREFIX):
        return qr
    return str(segno.make(qr, error="m").png_data_uri(scale=4))


def phone_status_json(row: CompanyPhoneStatus, sending: SendingToday | None = None) -> models.PhoneBotStatus:
    """One phone of ``/api/bot-status`` (the QR code as a PNG data URL while pairing; a WhatsApp-Web
    phone's sends today against its anti-ban caps as ``sending``)."""
    metadata: JsonObject = row["metadata"] or {}
    live = live_status(row["status"], metadata)
    status = live.status if row["status"] or row["configured"] else "not_configured"
    error = live.reason
    pairing_code = metadata.get("pairingCode")
    return models.PhoneBotStatus(
        phoneIndex=row["phone_index"],
        status=status,
        connectionType=row["connection_type"] or "wwebjs",
        processName=row["process_name"],
        configured=bool(row["configured"]),
        qrCode=qr_data_url(metadata.get("qrCode")) if status == "qr" else None,
        pairingCode=pairing_code if status == "pairing_code" and isinstance(pairing_code, str) else None,
        phoneInfo=row["phone_number"] or row["display_phone_number"],
        lastSeen=row["last_seen"].isoformat() if row["last_seen"] else None,
        error=error,
        pausedUntil=live.paused_until.isoformat() if live.paused_until else None,
        sending=SendingTodayView.of(sending) if sending is not None else None,
    )


def build(db: Database, phone_config: PhoneConfigService, settings: Settings) -> APIRouter:
    """Phone configuration routes: connect Meta / 360dialog, list, status, remove."""
    router = APIRouter(tags=["phones"])

    @router.post(
        "/api/whatsapp/meta-direct/connect", response_model=models.PhoneConfigSaved,
        summary="Connect a phone through Meta's Cloud API (phone number id, WABA id, access token)",
        responses={200: {"content": {"application/json": {"example": {
            "success": True, "companyId": "acme", "phoneIndex": 1, "connectionType": "meta_direct",
            "processName": "meta", "queueName": "meta-messages", "displayPhoneNumber": "+60 12-345 6789",
            "status": "pending"}}}}, **problem_responses(400, 401, 404, 409, 422, 503)},
    )
    async def meta_direct_connect(
        principal: CurrentPrincipal,
        body: Annotated[models.MetaDirectConnect, Body(openapi_examples={"connect": {
            "summary": "Meta Direct", "value": {
                "companyId": "acme", "phoneIndex": 1, "phoneNumberId": "106540352242922", "wabaId": "102290129340398",
                "accessToken": "EAAGm0PX4ZCpsBA...", "displayPhoneNumber": "+60 12-345 6789"}}})],
    ) -> models.PhoneConfigSaved:
        principal.require_company(body.companyId)
        principal.require_phone(body.phoneIndex)
        config = await phone_config.connect_meta(
            body.companyId, body.phoneIndex, phone_number_id=body.phoneNumberId, waba_id=body.wabaId,
            access_token=body.accessToken, display_phone_number=body.displayPhoneNumber,
            connection_type=body.connectionType)
        return saved(config)

    @router.post(
        "/api/whatsapp/360dialog/onboard", response_model=models.PhoneConfigSaved,
        summary="Save a phone onboarded through 360dialog (client id, channel id, API key)",
        responses={200: {"content": {"application/json": {"example": {
            "success": True, "companyId": "acme", "phoneIndex": 2, "connectionType": "360dialog",
            "processName": "meta", "queueName": "meta-messages", "displayPhoneNumber": None,
            "status": "pending"}}}}, **problem_responses(400, 401, 404, 409, 422, 503)},
    )
    async def dialog360_onboard(
        principal: CurrentPrincipal,
        body: Annotated[models.Dialog360Onboard, Body(openapi_examples={"onboard": {"summary": "360dialog", "value": {
            "companyId": "acme", "phoneIndex": 2, "clientId": "aBcD1234", "channelId": "XyZ98765",
            "apiKey": "d360-secret-key"}}})],
    ) -> models.PhoneConfigSaved:
        principal.require_company(body.companyId)
        principal.require_phone(body.phoneIndex)
        config = await phone_config.onboard_360dialog(
            body.companyId, body.phoneIndex, client_id=body.clientId, channel_id=body.channelId,
            api_key=body.apiKey, display_phone_number=body.displayPhoneNumber)
        return saved(config)

    @router.get(
        "/api/whatsapp/config/{companyId}", response_model=list[models.PhoneConfigRow],
        summary="A company's phone configurations (no secrets)",
        responses={200: {"content": {"application/json": {"example": [models.PHONE_ROW_EXAMPLE]}}},
                   **problem_responses(401, 404, 422, 503)},
    )
    async def get_config(principal: CurrentPrincipal, companyId: CompanyPath) -> list[models.PhoneConfigRow]:
        principal.require_company(companyId)
        async with db.connection() as conn:
            phones = await store.company_phones(conn, companyId)
            if not phones:
                await tenancy.get_company(conn, companyId)  # 404 for a company that does not exist
        return [phone_row(p) for p in phones]

    @router.delete(
        "/api/whatsapp/config/{companyId}/{phoneIndex}", response_model=models.Removed,
        summary="Remove a phone's configuration (its next message answers 404)",
        responses={200: {"content": {"application/json": {"example": {
            "success": True, "companyId": "acme", "phoneIndex": 1}}}}, **problem_responses(401, 404, 422, 503)},
    )
    async def delete_config(
        principal: CurrentPrincipal, companyId: CompanyPath,
        phoneIndex: Annotated[int, Path(ge=0, le=MAX_PHONE_INDEX, examples=[1])],
    ) -> models.Removed:
        principal.require_company(companyId)
        await phone_config.remove(companyId, phoneIndex)
        return models.Removed(success=True, companyId=companyId, phoneIndex=phoneIndex)

    @router.put(
        "/api/whatsapp/config/{companyId}/{phoneIndex}/rate-limit", response_model=models.PhoneRateLimit,
        summary="Set a Cloud API / 360dialog phone's messages per second (null: the default); applies within 5 s",
        responses={200: {"content": {"application/json": {"example": models.RATE_LIMIT_EXAMPLE}}},
                   **problem_responses(401, 403, 404, 422, 503)},
    )
    async def put_rate_limit(
        principal: CurrentPrincipal, companyId: CompanyPath,
        phoneIndex: Annotated[int, Path(ge=0, le=MAX_PHONE_INDEX, examples=[1])],
        body: Annotated[models.RateLimitChange, Body(openapi_examples={
            "set": {"summary": "40 messages per second", "value": {"messagesPerSecond": 40}},
            "reset": {"summary": "back to the default", "value": {"messagesPerSecond": None}}})],
    ) -> models.PhoneRateLimit:
        principal.require_company(companyId)
        principal.require_phone(phoneIndex)
        config = await phone_config.set_rate_limit(companyId, phoneIndex, body.messagesPerSecond)
        rate = rate_limit(settings, config.connection_type, config.settings)
        return models.PhoneRateLimit.of(companyId, phoneIndex, rate)

    @router.get(
        "/api/whatsapp/meta-accounts", response_model=list[models.PhoneConfigRow],
        summary="Every Cloud API phone of every company (operator key)",
        responses={200: {"content": {"application/json": {"example": [models.PHONE_ROW_EXAMPLE]}}},
                   **problem_responses(401, 403, 503)},
    )
    async def meta_accounts(_principal: AdminPrincipal) -> list[models.PhoneConfigRow]:
        async with db.connection() as conn:
            phones = await store.all_phones(conn, [*META_TYPES, "360dialog"])
        return [phone_row(p) for p in phones]

    @router.get(
        "/api/v1/phones/{phoneIndex}", response_model=models.PhoneBotStatus,
        summary="One phone's status; on WhatsApp Web also today's sends against its anti-ban caps",
        responses={200: {"content": {"application/json": {"example": models.WWEBJS_PHONE_STATUS_EXAMPLE}}},
                   **problem_responses(401, 403, 404, 422, 503)},
    )
    async def phone_status(
        principal: CurrentPrincipal, phoneIndex: Annotated[int, Path(ge=0, le=MAX_PHONE_INDEX, examples=[0])],
        companyId: Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN, examples=["acme"],
                                               description="The company (required with an operator key)")] = None,
    ) -> models.PhoneBotStatus:
        company_id = principal.company_required(companyId)
        async with db.connection() as conn:
            rows = await store.company_phone_statuses(conn, company_id)
            if not rows:
                await tenancy.get_company(conn, company_id)  # 404 for a company that does not exist
            row = next((r for r in rows if r["phone_index"] == phoneIndex and r["configured"]), None)
            if row is None:
                raise NotFound(f"no phone {phoneIndex} configured for company {company_id!r}: "
                               "GET /api/whatsapp/config/{companyId} lists them")
            sending = (await phone_sending(conn, settings, company_id, phoneIndex)
                       if (row["connection_type"] or "wwebjs") == "wwebjs" else None)
        return phone_status_json(row, sending)

    @router.get(
        "/api/bot-status/{companyId}", response_model=models.BotStatus,
        summary="Each phone's connection status (QR code while pairing, connection type)",
        responses={200: {"content": {"application/json": {"example": models.BOT_STATUS_EXAMPLE}}},
                   **problem_responses(401, 404, 422, 503)},
    )
    async def bot_status(principal: CurrentPrincipal, companyId: CompanyPath) -> models.BotStatus:
        principal.require_company(companyId)
        async with db.connection() as conn:
            rows = await store.company_phone_statuses(conn, companyId)
            if not rows:
                await tenancy.get_company(conn, companyId)
            sending = {r["phone_index"]: await phone_sending(conn, settings, companyId, r["phone_index"])
                       for r in rows if r["configured"] and (r["connection_type"] or "wwebjs") == "wwebjs"}
        phones = [phone_status_json(r, sending.get(r["phone_index"])) for r in rows]
        first = phones[0] if phones else None
        return models.BotStatus(
            companyId=companyId,
            status=first.status if first else "not_configured",
            qrCode=first.qrCode if first else None,
            phoneInfo=first.phoneInfo if first else None,
            connectionType=first.connectionType if first else None,
            phoneCount=len(phones),
            phones=phones,
        )

    return router
