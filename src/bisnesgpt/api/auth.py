"""Who is calling: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A company key reaches only its company; a mismatch answers 404 (never "forbidden", which
would confirm the other tenant exists). The operator key is ``ADMIN_API_KEY`` (compared
in constant time to its hash) or an admin key from ``bisnesgpt keys create --admin``.

A company key may be limited to some scopes and phones (``bisnesgpt keys create --scope …
--phone …``) and any key may expire (``--expires``): an expired key is a 401, a missing scope
a 403 ``missing-scope`` naming it, another phone a 403 ``phone-not-allowed``; which route
needs what is the table in ``scopes.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from bisnesgpt.api.key_cache import KeyCache, key_cache
from bisnesgpt.api.rate_limits import api_limits, client_subject
from bisnesgpt.api.scopes import ROUTE_RULES, RouteRule
from bisnesgpt.core.crypto import constant_time_equals, hash_api_key
from bisnesgpt.core.errors import Forbidden, MissingScope, NotFound, PhoneNotAllowed, Unauthorized, ValidationFailed
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.tenancy import store
from bisnesgpt.tenancy.store import Scope

PrincipalKind = Literal["admin", "company"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an operator (all companies) or one company."""

    kind: PrincipalKind
    company_id: str | None
    key_id: int | None
    scopes: frozenset[Scope] | None = None  # None: every scope
    phones: frozenset[int] | None = None  # None: every phone of the company

    @property
    def is_admin(self) -> bool:
        """Whether this is an operator (every company, and the operator-only routes)."""
        return self.kind == "admin"

    @property
    def limited(self) -> bool:
        """Whether the key was narrowed to some scopes or phones."""
        return self.scopes is not None or self.phones is not None

    def require_scope(self, scope: Scope) -> None:
        """403 ``missing-scope`` naming ``scope`` unless the key has it."""
        if self.scopes is not None and scope not in self.scopes:
            held = ", ".join(sorted(self.scopes))
            raise MissingScope(f"this API key lacks the scope {scope!r} (it has: {held}); "
                               f"create a key with `bisnesgpt keys create <company> --scope {scope}`",
                               extra={"missing_scope": scope})

    def require_phone(self, phone_index: int) -> None:
        """403 ``phone-not-allowed`` unless the key may act on phone ``phone_index``."""
        if self.phones is not None and phone_index not in self.phones:
            raise PhoneNotAllowed(f"this API key is limited to phone(s) {_listed(self.phones)}, not phone "
                                  f"{phone_index}", extra={"allowed_phones": sorted(self.phones)})

    def require_every_phone(self, what: str = "this operation") -> None:
        """403 for a phone-limited key: ``what`` concerns every phone of the company."""
        if self.phones is not None:
            raise PhoneNotAllowed(f"this API key is limited to phone(s) {_listed(self.phones)}; {what} spans every "
                                  "phone of the company (name a phone, or use a key without a phone limit)",
                                  extra={"allowed_phones": sorted(self.phones)})

    def require_unlimited(self, what: str) -> None:
        """403 unless the key has every scope and phone (``what`` needs them all, e.g. the dashboard)."""
        if self.limited:
            raise Forbidden(f"{what} needs an API key with every scope and phone; this one is limited")

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


async def authenticate(ctx: ProcessContext, key: str | None, cache: KeyCache | None = None) -> Principal:
    """The principal of an API key: the operator key, or an active key of an active company (401 otherwise).

    With ``cache``, a key that authenticated a moment ago is not read again (``key_cache.py``
    says how soon a revocation is honoured).
    """
    if not key:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    key_hash = hash_api_key(key)
    generation = cache.generation if cache is not None else 0
    admin = ctx.settings.admin_api_key
    if admin is not None and constant_time_equals(key_hash, hash_api_key(admin.get_secret_value())):
        return Principal("admin", None, None)
    cached = cache.get(key_hash) if cache is not None else None
    if cached is not None:
        record, company_status = cached.record, cached.company_status
    else:
        async with ctx.db.connection() as conn:
            found = await store.find_key(conn, key)
        if found is None or found[0].revoked_at is not None:
            raise Unauthorized("invalid or revoked API key: use a key `bisnesgpt keys create <company>` printed")
        record, company_status = found
    if record.role == "company" and company_status != "active":
        raise Unauthorized("this company is disabled")
    if record.expired():
        raise Unauthorized(f"this API key expired at {record.expires_at:%Y-%m-%dT%H:%M:%SZ}; create a new one")
    if store.touch_due(record):
        async with ctx.db.connection() as conn:
            await store.touch_key(conn, record.id)
        record = dataclasses.replace(record, last_used_at=datetime.now(UTC))
        if cache is not None and cached is not None:
            generation = cache.generation
            cached = None  # re-cached below with the new last_used_at
    if cache is not None and cached is None:
        cache.put(key_hash, record, company_status, generation)
    return Principal("admin" if record.role == "admin" else "company", record.company_id, record.id,
                     frozenset(record.scopes) if record.scopes is not None else None,
                     frozenset(record.phone_indexes) if record.phone_indexes is not None else None)


def _listed(phones: Iterable[int]) -> str:
    return ", ".join(str(index) for index in sorted(phones))


def _phone_param(request: Request) -> str | None:
    for source in (request.path_params, request.query_params):
        for name in ("phone_index", "phoneIndex"):
            if name in source:
                return str(source[name])
    return None


def enforce_route_rule(principal: Principal, request: Request) -> None:
    """A limited key's scope and phone for the route being called (``scopes.ROUTE_RULES``).

    A phone parameter that is not a number is left to the route's own validation (422).
    """
    if not principal.limited:
        return
    route = request.scope.get("route")
    rule: RouteRule | None = None
    path = getattr(route, "path", None)
    if isinstance(path, str):
        rule = ROUTE_RULES.get((request.method, path))
    if rule is None:
        raise Forbidden("this operation is not open to API keys limited to some scopes or phones")
    principal.require_scope(rule.scope)
    given = _phone_param(request)
    if rule.phone in ("path", "query", "query_or_every") and given is not None:
        if given.isdigit():
            principal.require_phone(int(given))
    elif rule.phone == "query":
        principal.require_phone(0)  # the routes' default phone
    elif rule.phone in ("query_or_every", "every"):
        principal.require_every_phone()


async def authenticate_connection(conn: HTTPConnection, key: str | None, *, surface: str = "api") -> Principal:
    """``authenticate`` behind the rate limits: 429 while the client's address is locked out for
    failed authentications (a failure with a presented key counts), or over the key's request rate."""
    ctx: ProcessContext = conn.app.state.ctx
    limits = api_limits(conn)
    subject = client_subject(conn)
    await limits.before_auth(subject)
    try:
        principal = await authenticate(ctx, key, key_cache(conn))
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
    enforce_route_rule(principal, request)
    return principal


async def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """FastAPI dependency: an operator (403 for a company key)."""
    principal.require_admin()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
