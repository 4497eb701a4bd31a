"""The dashboard's companies and API keys: list, create, disable/enable, send quota, keys.

Every change goes through ``tenancy.store``, as ``bisnesgpt companies …`` and ``bisnesgpt keys …``
do: the same checks (ids, scopes, phone limits, expiry), the same rows. A key's limits can
change later (``keys set``); like a revocation, the change is announced on ``api:keys`` so
that no api process keeps authorising by its cached copy. Operators see and manage
every company; a company's dashboard user sees its own company and manages its own company's keys
(never an operator key, never another company's: those answer 404). A new key is answered once,
in full; afterwards only its prefix is shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from asyncpg import Connection
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from bisnesgpt.coordination.channels import API_KEYS_CHANGED, publish
from bisnesgpt.core.errors import NotFound
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.dashboard.auth import Caller, dashboard_caller, dashboard_operator
from bisnesgpt.dashboard.confirm import Confirmed, require_confirmed
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.tenancy import store
from bisnesgpt.tenancy.store import ApiKey, Company, CompanyStatus, KeyLimits, KeyRole, Scope

COMPANY_ID = r"^[A-Za-z0-9_.-]{1,64}$"
Who = Annotated[Caller, Depends(dashboard_caller)]
Operator = Annotated[Caller, Depends(dashboard_operator)]
KeyId = Annotated[int, Path(ge=1, le=2**62)]


class CompanyView(TypedDict):
    """A company as the companies page shows it, with its send quotas (None: no quota)."""

    id: str
    name: str
    status: CompanyStatus
    createdAt: str
    sendQuotaPerMinute: int | None
    sendQuotaPerDay: int | None


class CompanyList(TypedDict):
    """The companies the caller may see (every one for an operator)."""

    companies: list[CompanyView]


class KeyView(TypedDict):
    """An API key as stored: its prefix and limits, never the key."""

    id: int
    companyId: str | None
    role: KeyRole
    name: str
    prefix: str
    scopes: list[Scope] | None
    phoneIndexes: list[int] | None
    expiresAt: str | None
    createdAt: str
    lastUsedAt: str | None
    revokedAt: str | None
    state: str


class KeyList(TypedDict):
    """API keys, revoked ones too, by id."""

    keys: list[KeyView]


class CreatedKey(TypedDict):
    """A new key: ``key`` is shown this once and never again."""

    apiKey: KeyView
    key: str


class NewCompany(BaseModel):
    """Body of a new company."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"companyId": "acme", "name": "Acme Sdn Bhd"}]})
    companyId: str = Field(pattern=COMPANY_ID, description="used in every API path: 1-64 of A-Z a-z 0-9 _ . -")
    name: str = Field("", max_length=200, description="display name (empty: the id)")


class QuotaChange(BaseModel):
    """Body of a send-quota change: sends per minute and per day (null or 0: no quota)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"perMinute": 100, "perDay": 5000}]})
    perMinute: int | None = Field(None, ge=0, le=1_000_000)
    perDay: int | None = Field(None, ge=0, le=100_000_000)


class KeyLimitsBody(BaseModel):
    """Body of a key's limits, replaced as a whole: scopes, phones and expiry (null: no limit)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"scopes": ["messages:send", "messages:read"], "phoneIndexes": [0, 1], "expiresAt": "2027-06-30T00:00:00Z"}]})
    scopes: list[Scope] | None = Field(None, description="only these scopes (null: every scope)")
    phoneIndexes: list[Annotated[int, Field(ge=0, le=1000)]] | None = Field(
        None, description="only these phones (null: every phone)")
    expiresAt: datetime | None = Field(None, description="when the key stops working (null: never)")

    def limits(self) -> KeyLimits:
        """The limits as ``tenancy.store`` checks and stores them."""
        return KeyLimits(tuple(self.scopes) if self.scopes is not None else None,
                         tuple(self.phoneIndexes) if self.phoneIndexes is not None else None, self.expiresAt)


class NewKey(KeyLimitsBody):
    """Body of a new API key: a company key (optionally limited) or, operators only, an operator key."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"companyId": "acme", "name": "crm", "scopes": ["messages:send"], "phoneIndexes": [0],
         "expiresAt": "2027-01-01T00:00:00Z"}]})
    companyId: str | None = Field(None, pattern=COMPANY_ID, description="the key's company; null: an operator key")
    name: str = Field("", max_length=200, description="a label to recognise the key by")


def _company_view(company: Company, quota: store.SendQuota) -> CompanyView:
    return {"id": company.id, "name": company.name, "status": company.status,
            "createdAt": company.created_at.isoformat(), "sendQuotaPerMinute": quota.per_minute,
            "sendQuotaPerDay": quota.per_day}


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def key_view(key: ApiKey) -> KeyView:
    """What the keys table shows of a key (its state: active, revoked or expired)."""
    state = "revoked" if key.revoked_at is not None else "expired" if key.expired() else "active"
    return {"id": key.id, "companyId": key.company_id, "role": key.role, "name": key.name, "prefix": key.key_prefix,
            "scopes": key.scopes, "phoneIndexes": key.phone_indexes, "expiresAt": _when(key.expires_at),
            "createdAt": key.created_at.isoformat(), "lastUsedAt": _when(key.last_used_at),
            "revokedAt": _when(key.revoked_at), "state": state}


async def _keys_changed(ctx: ProcessContext, what: JsonObject) -> None:
    """Every api process forgets the keys it cached (API_KEY_CACHE_SECONDS), so the change holds at once."""
    await publish(ctx.redis, API_KEYS_CHANGED, what, namespace=ctx.namespace)


def account_routes(router: APIRouter, ctx: ProcessContext) -> None:
    """``/dashboard/api/companies…`` and ``/dashboard/api/keys…`` on ``router``."""

    async def view(company_id: str) -> CompanyView:
        async with ctx.db.connection() as conn:
            company = await store.get_company(conn, company_id)
            return _company_view(company, await store.send_quota(conn, company_id))

    async def set_status(who: Caller, company_id: str, status: CompanyStatus) -> CompanyView:
        async with ctx.db.connection() as conn:
            await store.set_company_status(conn, company_id, status)
        await _keys_changed(ctx, {"companyId": company_id, "origin": "dashboard"})
        await ctx.events.record(f"dashboard.company.{'enable' if status == 'active' else 'disable'}",
                                {"companyId": company_id, "by": who.label}, "warning")
        return await view(company_id)

    @router.get("/companies", summary="The companies the caller may see, with their status and send quotas")
    async def company_list(who: Who) -> CompanyList:
        async with ctx.db.connection() as conn:
            own = who.principal.company_scope(None)
            companies = [await store.get_company(conn, own)] if own is not None else await store.list_companies(conn)
            return {"companies": [_company_view(c, await store.send_quota(conn, c.id)) for c in companies]}

    @router.post("/companies", status_code=201, summary="Create a company (operators)")
    async def company_create(who: Operator, body: NewCompany) -> CompanyView:
        async with ctx.db.connection() as conn:
            await store.create_company(conn, body.companyId, body.name.strip() or body.companyId)
        await ctx.events.record("dashboard.company.create", {"companyId": body.companyId, "by": who.label})
        return await view(body.companyId)

    @router.post("/companies/{company_id}/disable",
                 summary="Disable a company (operators): its keys and sign-ins are refused until enabled")
    async def company_disable(who: Operator, company_id: Annotated[str, Path(pattern=COMPANY_ID)],
                              body: Confirmed | None = None) -> CompanyView:
        require_confirmed(body)
        return await set_status(who, company_id, "disabled")

    @router.post("/companies/{company_id}/enable", summary="Enable a disabled company again (operators)")
    async def company_enable(who: Operator, company_id: Annotated[str, Path(pattern=COMPANY_ID)]) -> CompanyView:
        return await set_status(who, company_id, "active")

    @router.post("/companies/{company_id}/quota",
                 summary="Set a company's send quotas (operators; a send over one is answered 429 and not stored)")
    async def company_quota(who: Operator, company_id: Annotated[str, Path(pattern=COMPANY_ID)],
                            body: QuotaChange) -> CompanyView:
        async with ctx.db.connection() as conn:
            await store.set_send_quota(conn, company_id, per_minute=body.perMinute or None,
                                       per_day=body.perDay or None)
        await ctx.events.record("dashboard.company.quota", {"companyId": company_id, "perMinute": body.perMinute,
                                                            "perDay": body.perDay, "by": who.label})
        return await view(company_id)

    _key_routes(router, ctx)


def _key_routes(router: APIRouter, ctx: ProcessContext) -> None:
    """``/dashboard/api/keys…``: list, create, change limits, revoke."""

    @router.get("/keys", summary="API keys (prefixes only), revoked ones too; a company user: its own company's")
    async def key_list(who: Who, company: Annotated[str | None, Query(pattern=COMPANY_ID)] = None) -> KeyList:
        async with ctx.db.connection() as conn:
            scope = who.principal.company_scope(company)
            if scope is not None:
                await store.get_company(conn, scope)
            return {"keys": [key_view(k) for k in await store.list_api_keys(conn, scope)]}

    @router.post("/keys", status_code=201,
                 summary="Create an API key (shown once): a company key, optionally limited, or an operator key")
    async def key_create(who: Who, body: NewKey) -> CreatedKey:
        if body.companyId is None:
            who.principal.require_admin()
        else:
            who.principal.require_company(body.companyId)
        limits = body.limits()
        async with ctx.db.transaction() as conn:
            if body.companyId is not None:
                await store.get_company(conn, body.companyId)
            record, plaintext = await store.create_api_key(conn, company_id=body.companyId, name=body.name,
                                                           limits=limits)
        await ctx.events.record("dashboard.key.create", {"companyId": body.companyId, "keyId": record.id,
                                                         "by": who.label})
        return {"apiKey": key_view(record), "key": plaintext}

    async def own_key(who: Caller, conn: Connection, key_id: int) -> ApiKey:
        key = await store.get_api_key(conn, key_id)
        if not who.principal.is_admin and key.company_id != who.principal.company_id:
            raise NotFound("API key not found")  # another tenant's key: do not confirm it exists
        return key

    @router.post("/keys/{key_id}/limits",
                 summary="Change an API key's scopes, phones and expiry: they hold at once, on every api process")
    async def key_limits(who: Who, key_id: KeyId, body: KeyLimitsBody) -> KeyView:
        async with ctx.db.transaction() as conn:
            key = await own_key(who, conn, key_id)
            changed = await store.set_api_key_limits(conn, key_id, body.limits())
        await _keys_changed(ctx, {"keyId": key_id, "origin": "dashboard"})
        await ctx.events.record("dashboard.key.limits", {"companyId": key.company_id, "keyId": key_id,
                                                         "by": who.label})
        return key_view(changed)

    @router.post("/keys/{key_id}/revoke", summary="Revoke an API key: it stops working at once")
    async def key_revoke(who: Who, key_id: KeyId, body: Confirmed | None = None) -> KeyView:
        require_confirmed(body)
        async with ctx.db.transaction() as conn:
            key = await own_key(who, conn, key_id)
            await store.revoke_api_key(conn, key_id)
            revoked = await store.get_api_key(conn, key_id)
        await _keys_changed(ctx, {"keyId": key_id, "origin": "dashboard"})
        await ctx.events.record("dashboard.key.revoke", {"companyId": key.company_id, "keyId": key_id,
                                                         "by": who.label}, "warning")
        return key_view(revoked)
