"""The audit log: every change an authenticated caller makes, through the API or the dashboard.

``AuditTrail`` is an ASGI middleware around the whole app. After a mutating request
(POST/PUT/PATCH/DELETE under ``/api/`` or ``/dashboard/api/``) whose caller was authenticated
(the auth dependencies leave the ``Principal`` in ``request.state.principal``), it stores one
``audit_log`` row: who, which key, the client address (``scope["client"]``, as the HTTP edge
judged it behind trusted proxies), the route, the path, the company acted on (named by the
path, the query or a JSON body's ``companyId``/``company_id``; the company key's own
otherwise) and the status answered. A request refused before authentication leaves no row (failed sign-ins
are counted by the rate limits and recorded as events).

Sends, edits, deletes and reactions of messages are not repeated here: each is its own row
in ``messages``, with its history. The row is written before the last byte of the answer
goes out, so a client that saw the answer finds the entry; a write that fails (PostgreSQL
gone) never fails the request: it is logged and counted in
``bisnesgpt_audit_write_failures_total``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs

from prometheus_client import Counter

from bisnesgpt.api.auth import Principal
from bisnesgpt.api.scopes import ACT_ON_CHAT, ROUTE_RULES, SEND
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED_PREFIXES = {"/api/": "api", "/dashboard/api/": "dashboard"}
# Path, query or JSON body members that name the company a request acts on (a company key's
# own otherwise); a JSON body is looked at up to this size.
COMPANY_PARAMS = ("companyId", "company_id")
BODY_PEEK_BYTES = 64 * 1024
# Sends and changes of messages (recorded as the messages), media uploads for them, and read
# receipts / typing in a chat: not changes to the account, so not here.
MESSAGE_ROUTES = frozenset({route for route, rule in ROUTE_RULES.items() if rule is SEND or rule is ACT_ON_CHAT}
                           | {("POST", "/api/v1/media")})

AUDIT_WRITE_FAILURES = Counter("bisnesgpt_audit_write_failures_total",
                               "Audit log rows that could not be stored (the request itself was answered)")

Via = Literal["api", "dashboard"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class AuditEntry:
    """One change, as stored and as listed."""

    actor_kind: str
    actor_company_id: str | None
    key_id: int | None
    via: Via
    client_address: str | None
    method: str
    route: str
    path: str
    target_company_id: str | None
    status: int
    id: int | None = None
    at: datetime | None = None


async def record(db: Database, entry: AuditEntry) -> None:
    """Store one entry."""
    async with db.connection() as conn:
        await conn.execute(SQL.record_audit, entry.actor_kind, entry.actor_company_id, entry.key_id, entry.via,
                           entry.client_address, entry.method, entry.route, entry.path, entry.target_company_id,
                           entry.status)


async def entries(db: Database, *, viewer_company: str | None, company: str | None, before: int | None,
                  limit: int) -> list[AuditEntry]:
    """The newest entries first: a company's own (``viewer_company``), or every company's."""
    async with db.connection() as conn:
        rows = await conn.fetch(SQL.audit_entries, viewer_company, company, before, limit)
    return [AuditEntry(r["actor_kind"], r["actor_company_id"], r["key_id"], r["via"], r["client_address"],
                       r["method"], r["route"], r["path"], r["target_company_id"], r["status"], r["id"], r["at"])
            for r in rows]


def _via(path: str) -> Via | None:
    for prefix, via in AUDITED_PREFIXES.items():
        if path.startswith(prefix):
            return "api" if via == "api" else "dashboard"
    return None


def _body_company(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    return next((str(document[name]) for name in COMPANY_PARAMS if isinstance(document.get(name), str)), None)


def audited(scope: Scope, body: bytes = b"") -> AuditEntry | None:
    """The entry a finished request leaves (status filled in later), or None when it leaves none."""
    if scope.get("type") != "http" or scope.get("method") not in MUTATING:
        return None
    path = str(scope.get("path", ""))
    via = _via(path)
    principal = (scope.get("state") or {}).get("principal")
    if via is None or not isinstance(principal, Principal):
        return None
    route = getattr(scope.get("route"), "path", None) or path
    if (scope["method"], route) in MESSAGE_ROUTES:
        return None
    params = scope.get("path_params") or {}
    query = parse_qs(bytes(scope.get("query_string") or b"").decode("latin-1"))
    target = next((str(params[name]) for name in COMPANY_PARAMS if params.get(name)), None) \
        or next((query[name][0] for name in COMPANY_PARAMS if query.get(name)), None) \
        or _body_company(body) or principal.company_id
    client = scope.get("client")
    return AuditEntry(principal.kind, principal.company_id, principal.key_id, via,
                      str(client[0]) if client else None, str(scope["method"]), route, path, target, 0)


class AuditTrail:
    """ASGI middleware that records ``audited`` requests after answering them."""

    def __init__(self, app: ASGIApp, *, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, remembering its status, then store its entry if it leaves one."""
        if scope.get("type") != "http" or scope.get("method") not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = 500
        peeked: list[bytes] = []
        peeking = b"json" in dict(scope.get("headers") or []).get(b"content-type", b"")

        async def receive_and_peek() -> Message:
            nonlocal peeking
            message = await receive()
            if peeking and message.get("type") == "http.request":
                peeked.append(bytes(message.get("body", b"")))
                peeking = sum(map(len, peeked)) <= BODY_PEEK_BYTES
            return message

        stored = False

        async def store() -> None:
            nonlocal stored
            stored = True
            body = b"".join(peeked) if sum(map(len, peeked)) <= BODY_PEEK_BYTES else b""
            entry = audited(scope, body)
            if entry is not None:
                await self._store(AuditEntry(**{**entry.__dict__, "status": status}))

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body") and not stored:
                await store()  # before the answer completes: a client that saw it finds the entry
            await send(message)

        try:
            await self.app(scope, receive_and_peek, send_and_note)
        finally:
            if not stored:
                await store()

    async def _store(self, entry: AuditEntry) -> None:
        try:
            await record(self.db, entry)
        except (BisnesgptError, OSError) as exc:
            AUDIT_WRITE_FAILURES.inc()
            log.warning("audit entry of %s %s not stored: %s", entry.method, entry.path,
                        getattr(exc, "detail", None) or exc)
