"""The anti-ban controls of WhatsApp-Web phones: per phone, with company defaults over the WWEBJS_* settings.

* ``GET   /api/sessions/{companyId}/{phoneIndex}/antiban`` — the controls in effect (and where
  each comes from), what the phone and the company set, today's counts against the caps
* ``PATCH /api/sessions/{companyId}/{phoneIndex}/antiban`` — set the phone's own (``null``: inherit)
* ``PATCH /api/sessions/{companyId}/antiban`` — set the company's defaults

Stored in PostgreSQL; the next send of the phone obeys them (no restart).
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Body, Path

from bisnesgpt.api.auth import CurrentPrincipal, Principal
from bisnesgpt.api.phone_sessions import company_exists, load_wwebjs_phone
from bisnesgpt.api.schemas import antiban as models
from bisnesgpt.api.schemas.common import MAX_PHONE_INDEX, CompanyPath, problem_responses
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import NotFound
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.antiban import sending_today
from bisnesgpt.engines.wwebjs.antiban_settings import (
    AntiBanOverrides,
    company_overrides,
    load_overrides,
    resolve,
    save_overrides,
)

PhoneIndexPath = Annotated[int, Path(ge=0, le=MAX_PHONE_INDEX, examples=[0])]
PATCH_EXAMPLES = {
    "cap": {"summary": "Cap this phone at 200 messages a day", "value": {"dailyMessageCap": 200}},
    "inherit": {"summary": "Back to the company's default (or the global setting)", "value": {
        "dailyMessageCap": None}},
    "gentle": {"summary": "Typing, a week of warm-up, wait when over a cap", "value": {
        "simulateTyping": True, "warmupDays": 7, "dailyCapAction": "wait", "dailyNewChatCap": 20}},
}


def _api(overrides: AntiBanOverrides) -> dict[str, bool | int | str | None]:
    return {models.STORED_NAMES[name]: value for name, value in overrides.as_json().items()}


def _changes(body: models.AntiBanPatch) -> dict[str, object]:
    return {models.API_NAMES[name]: getattr(body, name) for name in body.model_fields_set}


async def _wwebjs_phone(conn: asyncpg.Connection, principal: Principal, company_id: str, phone_index: int) -> None:
    """404 for a company or phone that is not the caller's, 409 for a phone that is not WhatsApp Web."""
    principal.require_company(company_id)
    principal.require_phone(phone_index)
    await load_wwebjs_phone(conn, company_id, phone_index, only="the anti-ban controls are for WhatsApp-Web "
                            "(wwebjs) phones (Meta paces Cloud API phones itself)")


def build(db: Database, settings: Settings) -> APIRouter:
    """The anti-ban control routes."""
    router = APIRouter(tags=["sessions"])

    async def view(conn: asyncpg.Connection, company_id: str, phone_index: int) -> models.AntiBanView:
        phone, company = await load_overrides(conn, company_id, phone_index)
        policy = resolve(settings, phone, company)
        today = await sending_today(conn, policy, company_id, phone_index)
        effective = {models.STORED_NAMES[name]: models.Effective(value=getattr(policy, name), source=source)
                     for name, source in policy.sources.items()}
        return models.AntiBanView(
            companyId=company_id, phoneIndex=phone_index, effective=effective, phone=_api(phone),
            company=_api(company), today=models.SendingTodayView.of(today))

    @router.get(
        "/api/sessions/{company_id}/{phone_index}/antiban", response_model=models.AntiBanView,
        summary="A phone's anti-ban controls in effect, and today's sends against its caps",
        responses={200: {"content": {"application/json": {"example": models.ANTIBAN_EXAMPLE}}},
                   **problem_responses(401, 403, 404, 409, 422, 503)},
    )
    async def get_antiban(principal: CurrentPrincipal, company_id: CompanyPath,
                          phone_index: PhoneIndexPath) -> models.AntiBanView:
        async with db.connection() as conn:
            await _wwebjs_phone(conn, principal, company_id, phone_index)
            return await view(conn, company_id, phone_index)

    @router.patch(
        "/api/sessions/{company_id}/{phone_index}/antiban", response_model=models.AntiBanView,
        summary="Set a phone's own anti-ban controls (null: inherit the company's default or the global setting)",
        responses={200: {"content": {"application/json": {"example": models.ANTIBAN_EXAMPLE}}},
                   **problem_responses(400, 401, 403, 404, 409, 422, 503)},
    )
    async def patch_antiban(principal: CurrentPrincipal, company_id: CompanyPath, phone_index: PhoneIndexPath,
                            body: Annotated[models.AntiBanPatch, Body(openapi_examples=PATCH_EXAMPLES)],
                            ) -> models.AntiBanView:
        async with db.transaction() as conn:
            await _wwebjs_phone(conn, principal, company_id, phone_index)
            phone, _company = await load_overrides(conn, company_id, phone_index)
            await save_overrides(conn, company_id, phone_index, phone.changed(_changes(body)))
            return await view(conn, company_id, phone_index)

    @router.patch(
        "/api/sessions/{company_id}/antiban", response_model=models.CompanyAntiBanView,
        summary="Set the company's anti-ban defaults (for its phones that do not set their own)",
        responses={200: {"content": {"application/json": {"example": {
            "companyId": "acme", "company": models.ANTIBAN_EXAMPLE["company"]}}}},
                   **problem_responses(400, 401, 403, 404, 422, 503)},
    )
    async def patch_company_antiban(principal: CurrentPrincipal, company_id: CompanyPath,
                                    body: Annotated[models.AntiBanPatch, Body(openapi_examples=PATCH_EXAMPLES)],
                                    ) -> models.CompanyAntiBanView:
        principal.require_company(company_id)
        principal.require_every_phone("changing the company's anti-ban defaults")
        async with db.transaction() as conn:
            if not await company_exists(conn, company_id):
                raise NotFound("company not found")
            company = (await company_overrides(conn, company_id)).get((company_id, None), AntiBanOverrides())
            changed = company.changed(_changes(body))
            await save_overrides(conn, company_id, None, changed)
        return models.CompanyAntiBanView(companyId=company_id, company=_api(changed))

    return router
