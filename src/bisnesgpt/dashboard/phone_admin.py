"""Adding a phone and changing its settings from the dashboard's phones page.

Through ``phones.service.PhoneConfigService``, as ``/api/whatsapp/meta-direct/connect`` and
``bisnesgpt phones add|set`` do: a Cloud API phone's claim is proven at the Graph API before it
is stored (the token must read the number, in that WABA; one number, one phone), its token is
stored encrypted and never shown again; a 360dialog phone's API key is checked at 360dialog
first, like ``/api/whatsapp/360dialog/onboard`` (the number it names is stored), then kept
encrypted and never shown again; a WhatsApp-Web phone is stored and its session starts
(the card then shows the QR code). Settings: the number shown, whether messages to one chat
leave in acceptance order, and a Cloud API / 360dialog phone's own send rate
(``PhoneConfigService.set_rate_limit``, as ``PUT /api/whatsapp/config/{c}/{i}/rate-limit``).
Scoped like every phone route: another company's phone is a 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from bisnesgpt.api.schemas.phones import RateLimitChange
from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.dashboard import phones
from bisnesgpt.dashboard.auth import Caller, dashboard_caller
from bisnesgpt.phones import store
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.context import ProcessContext

Who = Annotated[Caller, Depends(dashboard_caller)]
CompanyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
PhoneIndex = Annotated[int, Path(ge=0, le=1000)]
NewPhoneKind = Literal["wwebjs", "meta_direct", "360dialog"]


class NewPhone(BaseModel):
    """Body of a new phone: WhatsApp Web (nothing else needed), Cloud API (its ids and token) or 360dialog."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"companyId": "acme", "phoneIndex": 2, "connectionType": "wwebjs"},
        {"companyId": "acme", "phoneIndex": 3, "connectionType": "meta_direct", "phoneNumberId": "106540352242922",
         "wabaId": "102290129340398", "accessToken": "EAAG…", "displayPhoneNumber": "+60 12-345 6789"},
        {"companyId": "acme", "phoneIndex": 4, "connectionType": "360dialog", "clientId": "aBcD1234",
         "channelId": "XyZ98765", "apiKey": "d360-secret-key"}]})
    companyId: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="operators: the company")
    phoneIndex: int = Field(ge=0, le=1000)
    connectionType: NewPhoneKind
    phoneNumberId: str | None = Field(None, pattern=r"^[0-9]{1,32}$", description="Cloud API: the phone number id")
    wabaId: str | None = Field(None, pattern=r"^[0-9]{1,32}$", description="Cloud API: the WhatsApp Business Account")
    accessToken: str | None = Field(None, min_length=1, max_length=4096, description="Cloud API: stored encrypted")
    displayPhoneNumber: str | None = Field(None, max_length=32)
    clientId: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="360dialog: the client id")
    channelId: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="360dialog: the channel id")
    apiKey: str | None = Field(None, min_length=1, max_length=4096,
                               description="360dialog: the channel's D360-API-KEY, checked first, stored encrypted")


class PhoneSettings(BaseModel):
    """Body of a settings change (what is not given is kept)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"displayPhoneNumber": "+60 12-345 6789", "orderedSends": False}]})
    displayPhoneNumber: str | None = Field(None, max_length=32, description="the number shown on the card")
    orderedSends: bool | None = Field(None, description="messages to one chat leave in acceptance order")


def _missing(*fields: str, kind: str = "a Cloud API phone") -> ValidationFailed:
    return ValidationFailed(f"{', '.join(fields)}: required for {kind}",
                            errors=[{"field": f, "message": f"required for {kind}", "type": "missing"}
                                    for f in fields])


def phone_admin_routes(router: APIRouter, ctx: ProcessContext, phone_config: PhoneConfigService) -> None:
    """``POST /dashboard/api/phones`` and ``…/phones/{company}/{index}/settings`` on ``router``."""

    async def card(company_id: str, phone_index: int) -> phones.PhoneCard:
        cards, _counts = await phones.list_phones(ctx.db, company_id, phone_index, settings=ctx.settings)
        if not cards:
            raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
        return cards[0]

    @router.post("/phones", status_code=201,
                 summary="Add a phone: WhatsApp Web (its session starts), Cloud API or 360dialog (the claim "
                         "proven first)")
    async def phone_add(who: Who, body: NewPhone) -> phones.PhoneCard:
        company_id = who.principal.company_required(body.companyId)
        async with ctx.db.connection() as conn:
            if await store.get_phone(conn, company_id, body.phoneIndex) is not None:
                raise Conflict(f"phone {body.phoneIndex} of {company_id} exists: change its settings, or remove it "
                               "first")
        if body.connectionType == "meta_direct":
            number_id, waba_id, token = body.phoneNumberId, body.wabaId, body.accessToken
            if not (number_id and waba_id and token):
                raise _missing(*[f for f in ("phoneNumberId", "wabaId", "accessToken") if not getattr(body, f)])
            await phone_config.connect_meta(company_id, body.phoneIndex, phone_number_id=number_id,
                                            waba_id=waba_id, access_token=token,
                                            display_phone_number=body.displayPhoneNumber or None)
        elif body.connectionType == "360dialog":
            client_id, channel_id, api_key = body.clientId, body.channelId, body.apiKey
            if not (client_id and channel_id and api_key):
                raise _missing(*[f for f in ("clientId", "channelId", "apiKey") if not getattr(body, f)],
                               kind="a 360dialog phone")
            await phone_config.onboard_360dialog(company_id, body.phoneIndex, client_id=client_id,
                                                 channel_id=channel_id, api_key=api_key,
                                                 display_phone_number=body.displayPhoneNumber or None)
        else:
            fields: dict[str, str | None] = {}
            if body.displayPhoneNumber:
                fields["display_phone_number"] = body.displayPhoneNumber
            await phone_config.save(company_id, body.phoneIndex, connection_type="wwebjs", fields=fields)
        await ctx.events.record("dashboard.phone.add", {"companyId": company_id, "phoneIndex": body.phoneIndex,
                                                        "connectionType": body.connectionType, "by": who.label})
        return await card(company_id, body.phoneIndex)

    @router.post("/phones/{company_id}/{phone_index}/settings",
                 summary="Change a phone's shown number and per-chat order")
    async def phone_settings(who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                             body: PhoneSettings) -> phones.PhoneCard:
        who.principal.require_company(company_id, "phone")
        fields: dict[str, str | None] = {}
        if body.displayPhoneNumber is not None:
            fields["display_phone_number"] = body.displayPhoneNumber.strip() or None
        if body.orderedSends is not None:
            fields["ordered_sends"] = str(body.orderedSends).lower()
        if not fields:
            raise ValidationFailed("nothing to change: give displayPhoneNumber or orderedSends")
        await phone_config.update(company_id, phone_index, fields=fields)
        await ctx.events.record("dashboard.phone.settings", {"companyId": company_id, "phoneIndex": phone_index,
                                                             "changed": sorted(fields), "by": who.label})
        return await card(company_id, phone_index)

    @router.post("/phones/{company_id}/{phone_index}/rate-limit",
                 summary="Set a Cloud API / 360dialog phone's messages per second (null: the default)")
    async def phone_rate_limit(who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                               body: RateLimitChange) -> phones.PhoneCard:
        who.principal.require_company(company_id, "phone")
        await phone_config.set_rate_limit(company_id, phone_index, body.messagesPerSecond)
        await ctx.events.record("dashboard.phone.rate_limit", {"companyId": company_id, "phoneIndex": phone_index,
                                                               "messagesPerSecond": body.messagesPerSecond,
                                                               "by": who.label})
        return await card(company_id, phone_index)
