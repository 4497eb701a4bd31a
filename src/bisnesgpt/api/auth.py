"""Who is calling: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A company key reaches only its company; a mismatch answers 404 (never "forbidden", which
would confirm the other tenant exists). The operator key is ``ADMIN_API_KEY`` (compared
in constant time to its hash) or an admin key from ``bisnesgpt keys create --admin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from bisnesgpt.api.rate_limits import api_limits, client_subject
from bisnesgpt.core.crypto import constant_time_equals, hash_api_key
from bisnesgpt.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.tenancy import store

PrincipalKind = Literal["admin", "company"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an operator (all companies) or one company."""

    kind: PrincipalKind
    company_id: str | None
    key_id: int | None

    @property
    def is_admin(self) -> bool:
        """Whether this is an operator (every company, and the operator-only routes)."""
        return self.kind == "admin"

    def can_access(self, company_id: str) -> bool:
        """Whether this caller may see the company's resources."""
        return self.is_admin or self.company_id == company_id

    def require_company(self, company_id: str, what: str = "company") -> None:
        """404 (not 403) for another tenant's resources: do not confirm they exist."""
        if not self.can_access(company_id):
            raise NotFound(f"{what} not found")

    def require_admin(self) -> None:
        """403 unless this is an operator."""
        if not self.is_admin:
            raise Forbidden("this operation needs an operator (admin) key")

    def company_scope(self, company_id: str | None) -> str | None:
        """The company a request acts on: the one asked for (if allowed), else the key's own (None: an
        operator's "every company")."""
        if company_id is not None:
            self.require_company(company_id)
            return company_id
        return self.company_id

    def company_required(self, company_id: str | None, field: str = "companyId") -> str:
        """Like ``company_scope``, but an operator must name the company (422 otherwise)."""
        scoped = self.company_scope(company_id)
        if scoped is None:
            raise ValidationFailed(f"{field} is required with an operator key",
                                   errors=[{"field": field, "message": "required with an operator key",
                                            "type": "missing"}])
        return scoped


def presented_key(request: Request) -> str | None:
    """The API key a request carries (``Authorization: Bearer`` first, then ``X-API-Key``), if any."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def authenticate(ctx: ProcessContext, key: str | None) -> Principal:
    """The principal of an API key: the operator key, or an active key of an active company (401 otherwise)."""
    if not key:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    admin = ctx.settings.admin_api_key
    if admin is not None and constant_time_equals(hash_api_key(key), hash_api_key(admin.get_secret_value())):
        return Principal("admin", None, None)
    async with ctx.db.connection() as conn:
        found = await store.find_key(conn, key)
        if found is None or found[0].revoked_at is not None:
            raise Unauthorized("invalid or revoked API key: use a key `bisnesgpt keys create <company>` printed")
        record, company_status = found
        if record.role == "company" and company_status != "active":
            raise Unauthorized("this company is disabled")
        if store.touch_due(record):
            await store.touch_key(conn, record.id)
    return Principal("admin" if record.role == "admin" else "company", record.company_id, record.id)


async def authenticate_connection(conn: HTTPConnection, key: str | None, *, surface: str = "api") -> Principal:
    """``authenticate`` behind the rate limits: 429 while the client's address is locked out for
    failed authentications (a failure with a presented key counts), or over the key's request rate."""
    ctx: ProcessContext = conn.app.state.ctx
    limits = api_limits(conn)
    subject = client_subject(conn)
    await limits.before_auth(subject)
    try:
        principal = await authenticate(ctx, key)
    except Unauthorized:
        if key:
            await limits.auth_failed(subject, surface)
        raise
    await limits.key_request(principal.key_id)
    return principal


# Declared only so that the OpenAPI document lists both ways to authenticate (and /docs
# offers them); ``presented_key`` reads the headers itself, so neither ever raises.
_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <API key>`")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: <key>`")


async def current_principal(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
    _api_key: Annotated[str | None, Depends(_API_KEY)] = None,
) -> Principal:
    """FastAPI dependency: the authenticated caller (401 problem otherwise)."""
    principal = await authenticate_connection(request, presented_key(request))
    request.state.principal = principal
    return principal


async def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """FastAPI dependency: an operator (403 for a company key)."""
    principal.require_admin()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
