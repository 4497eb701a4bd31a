"""Dashboard sign-in: API key → signed session cookie; CSRF tokens; who is asking.

The cookie is ``base64url(claims).base64url(HMAC-SHA256(secret, claims))`` with the
principal (operator or company, the key's id), a fingerprint of the key, a random nonce
and an expiry. The secret is ``DASHBOARD_SESSION_SECRET`` or derived from
``ENCRYPTION_KEY`` (never a constant), so every api instance accepts every other's cookies
and rotating either key signs everyone out. A session is re-checked on use: a revoked key,
a disabled company or a changed ``ADMIN_API_KEY`` ends it.

CSRF: every state-changing request with the cookie must send the session's token (derived
from its nonce) in ``X-CSRF-Token`` (or the ``csrf`` form field) and, when the browser sends
``Origin``, come from this host; the cookie is ``SameSite=Strict`` besides. The sign-in form
itself uses a double-submit token. Requests with an API key header instead of the cookie
(scripts) need no CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import Response

from bisnesgpt.api.auth import Principal, authenticate_connection, presented_key
from bisnesgpt.config import Settings
from bisnesgpt.core.crypto import constant_time_equals, hash_api_key
from bisnesgpt.core.errors import ConfigError, Forbidden, Unauthorized
from bisnesgpt.core.hmac_secret import hmac_secret
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.queries import load_queries
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.dashboard")

SESSION_COOKIE = "bgpt_dashboard"
LOGIN_COOKIE = "bgpt_dashboard_login"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A key's validity is re-read at most this often per process (revocation takes effect within it).
KEY_CHECK_TTL_S = 5.0

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(key_hash: str) -> str:
    """A short tag of a key's hash: a session names the key it came from without holding it."""
    return hashlib.sha256(("dashboard:" + key_hash).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class DashboardSession:
    """A verified session cookie."""

    principal: Principal
    nonce: str
    key_fingerprint: str
    expires_at: float


@dataclass(frozen=True)
class Caller:
    """Who is asking, and how (a cookie session needs CSRF on actions; an API key does not)."""

    principal: Principal
    session: DashboardSession | None
    csrf_token: str | None

    @property
    def label(self) -> str:
        """How actions are attributed in events and history rows."""
        if self.principal.is_admin:
            return "admin" if self.principal.key_id is None else f"admin-key:{self.principal.key_id}"
        return f"key:{self.principal.key_id}"


class SessionSigner:
    """Signs and verifies session cookies and derives their CSRF tokens."""

    def __init__(self, secret: bytes, ttl_seconds: float) -> None:
        if len(secret) < 32:
            raise ConfigError("invalid setting DASHBOARD_SESSION_SECRET: needs at least 32 bytes")
        self._sign_key = hmac.new(secret, b"bisnesgpt dashboard session v1", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"bisnesgpt dashboard csrf v1", hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionSigner:
        """The signer of ``DASHBOARD_SESSION_SECRET``, else of ``ENCRYPTION_KEY`` (ConfigError with neither)."""
        secret = hmac_secret(settings.dashboard_session_secret, settings.encryption_key,
                             needs_key="the dashboard signs its sessions with a key derived from it "
                                       "(or set DASHBOARD_SESSION_SECRET)")
        return cls(secret, settings.dashboard_session_hours * 3600)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._sign_key, payload, hashlib.sha256).digest()

    def issue(self, principal: Principal, key_fingerprint: str, *, now: float | None = None) -> tuple[str, float]:
        """A cookie value for this principal and when it expires."""
        expires = (now if now is not None else time.time()) + self.ttl_seconds
        claims = {"v": 1, "k": principal.kind, "c": principal.company_id, "i": principal.key_id,
                  "f": key_fingerprint, "n": secrets.token_urlsafe(16), "e": int(expires)}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}", expires

    def read(self, value: str | None, *, now: float | None = None) -> DashboardSession | None:
        """The session in a cookie value, or None if it is missing, forged or expired."""
        claims = self._verified_claims(value)
        if claims is None:
            return None
        kind, company, key_id, expires = claims.get("k"), claims.get("c"), claims.get("i"), claims.get("e")
        if not isinstance(expires, int | float | str) or "n" not in claims or "f" not in claims:
            return None
        try:
            expires_at = float(expires)
        except ValueError:
            return None
        valid = (claims.get("v") == 1 and expires_at > (now if now is not None else time.time())
                 and (kind == "admin" or (kind == "company" and isinstance(company, str))))
        if not valid:
            return None
        principal = Principal("admin" if kind == "admin" else "company", company if isinstance(company, str) else None,
                              key_id if isinstance(key_id, int) else None)
        return DashboardSession(principal, str(claims["n"]), str(claims["f"]), expires_at)

    def _verified_claims(self, value: str | None) -> JsonObject | None:
        if not value or value.count(".") != 1:
            return None
        encoded, signature = value.split(".")
        try:
            payload, mac = _unb64(encoded), _unb64(signature)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            claims = json.loads(payload)
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None

    def csrf_token(self, session: DashboardSession) -> str:
        """The session's CSRF token (derived from its nonce: nothing to store)."""
        return _b64(hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).digest())

    def login_token(self) -> str:
        """A fresh double-submit token for the sign-in form."""
        return secrets.token_urlsafe(24)


class SessionAuth:
    """Turns a request into a ``Caller`` (cookie or API key) and enforces CSRF on actions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = SessionSigner.from_settings(settings)
        self._key_checks: dict[int, tuple[float, bool]] = {}

    @staticmethod
    def check_settings(settings: Settings) -> None:
        """Raise ConfigError now if sessions could not be signed with these settings."""
        SessionSigner.from_settings(settings)

    # --- sign-in ---------------------------------------------------------------------------

    async def sign_in(self, request: Request, key: str) -> tuple[Principal, str, float]:
        """Check a key (401 if bad, 429 while its address is locked out, 403 if limited) and return its
        principal with a new cookie value."""
        principal = await authenticate_connection(request, key.strip(), surface="dashboard")
        principal.require_unlimited("the dashboard")
        cookie, expires = self.signer.issue(principal, fingerprint(hash_api_key(key.strip())))
        return principal, cookie, expires

    def set_session_cookie(self, request: Request, response: Response, value: str) -> None:
        """Sign the browser in: the session cookie (HttpOnly, SameSite=Strict, Secure on https)."""
        response.set_cookie(SESSION_COOKIE, value, max_age=int(self.signer.ttl_seconds), path=COOKIE_PATH,
                            httponly=True, samesite="strict", secure=self.secure(request))

    def clear_session_cookie(self, request: Request, response: Response) -> None:
        """Sign the browser out."""
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                               secure=self.secure(request))

    def set_login_cookie(self, request: Request, response: Response, token: str) -> None:
        """The sign-in form's double-submit cookie (an hour, for the form's path only)."""
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/dashboard", httponly=True,
                            samesite="strict", secure=self.secure(request))

    def secure(self, request: Request) -> bool:
        """Whether cookies get ``Secure``: ``DASHBOARD_COOKIE_SECURE``, or (auto) when the request came over https."""
        mode = self.settings.dashboard_cookie_secure
        if mode == "auto":
            forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            return request.url.scheme == "https" or forwarded == "https"
        return mode == "always"

    # --- who is asking --------------------------------------------------------------------

    async def session(self, ctx: ProcessContext, request: Request) -> DashboardSession | None:
        """The request's valid session (signature, expiry, and the key still good), or None."""
        session = self.signer.read(request.cookies.get(SESSION_COOKIE))
        if session is None or not await self._still_valid(ctx, session):
            return None
        return session

    async def caller(self, ctx: ProcessContext, request: Request) -> Caller:
        """401 unless the request carries an API key or a valid session; CSRF on actions."""
        key = presented_key(request)
        if key is not None:
            principal = await authenticate_connection(request, key, surface="dashboard")
            principal.require_unlimited("the dashboard")
            return Caller(principal, None, None)
        session = await self.session(ctx, request)
        if session is None:
            raise Unauthorized("sign in at /dashboard/login (or send an API key)")
        csrf = self.signer.csrf_token(session)
        if request.method not in SAFE_METHODS:
            self.check_csrf(request, csrf, request.headers.get(CSRF_HEADER))
        return Caller(session.principal, session, csrf)

    def check_csrf(self, request: Request, expected: str, presented: str | None) -> None:
        """403 unless the presented token is the session's and the request comes from this origin."""
        if not presented or not constant_time_equals(presented, expected):
            raise Forbidden("missing or invalid CSRF token (reload the page)")
        self.check_origin(request)

    @staticmethod
    def check_origin(request: Request) -> None:
        """A browser's cross-site request names another origin: refuse it. (X-Forwarded-Host reaches this
        only from a proxy in FORWARDED_ALLOW_IPS: the edge removes it from every other request.)"""
        origin = request.headers.get("origin")
        if not origin or origin == "null":
            if origin == "null":
                raise Forbidden("cross-origin request refused")
            return
        host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
        if urlsplit(origin).netloc.lower() != host.split(",")[0].strip().lower():
            raise Forbidden("cross-origin request refused")

    async def _still_valid(self, ctx: ProcessContext, session: DashboardSession) -> bool:
        principal = session.principal
        if principal.key_id is None:  # the ADMIN_API_KEY operator key
            admin = ctx.settings.admin_api_key
            return bool(principal.is_admin and admin is not None
                        and constant_time_equals(fingerprint(hash_api_key(admin.get_secret_value())),
                                                 session.key_fingerprint))
        cached = self._key_checks.get(principal.key_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await ctx.db.fetchrow(SQL.key_state, principal.key_id)
        valid = bool(
            row is not None and row["active"] and row["role"] == principal.kind
            and row["company_id"] == principal.company_id
            and (row["role"] == "admin" or row["company_status"] == "active")
            and constant_time_equals(fingerprint(row["key_hash"]), session.key_fingerprint)
        )
        if len(self._key_checks) > 10_000:
            self._key_checks.clear()
        self._key_checks[principal.key_id] = (now + KEY_CHECK_TTL_S, valid)
        return valid


def session_auth(request: Request) -> SessionAuth:
    """The app's ``SessionAuth`` (built from its process's settings on first use)."""
    state = request.app.state
    auth: SessionAuth | None = getattr(state, "dashboard_auth", None)
    if auth is None:
        ctx: ProcessContext = state.ctx
        auth = SessionAuth(ctx.settings)
        state.dashboard_auth = auth
    return auth


async def dashboard_caller(request: Request) -> Caller:
    """FastAPI dependency: the signed-in (or API-key) caller; CSRF checked on actions."""
    who = await session_auth(request).caller(request.app.state.ctx, request)
    request.state.principal = who.principal  # the audit log records who acted
    return who


async def dashboard_operator(request: Request) -> Caller:
    """FastAPI dependency: an operator (403 for a company user)."""
    who = await dashboard_caller(request)
    who.principal.require_admin()
    return who

