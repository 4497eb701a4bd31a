"""The session API on ``api``: WhatsApp Web sessions of wwebjs phones, through the database.

The API never calls into a wwebjs process. It reads the session state the wwebjs
processes write (``phone_status``, ``wwebjs_sessions``, the ownership lease), records what
the operator wants (``wwebjs_sessions.desired_state``) and queues commands in
``wwebjs_session_commands``, then publishes a wake-up on ``process:message``; whichever
wwebjs process owns the session carries the command out and writes the result, which the
API waits for up to ``?wait=`` seconds (202 with the command's URL if it is not done yet).

Routes (a company key reaches its own company; the operator key reaches all):

* ``GET  /api/sessions/{companyId}`` — every wwebjs phone's session
* ``GET  /api/sessions/{companyId}/events`` — live ``status_update``/``auth_status`` (SSE)
* ``GET  /api/sessions/{companyId}/{phoneIndex}`` — one session
* ``GET  /api/sessions/{companyId}/{phoneIndex}/qr`` — the QR as ``image/png`` (``Accept`` or
  ``?format=png``) or JSON with the PNG data URL
* ``POST /api/sessions/{companyId}/{phoneIndex}/{start|stop|restart|logout}``
* ``POST /api/sessions/{companyId}/{phoneIndex}/pairing-code`` ``{"phoneNumber": "+60…"}``
* ``GET  /api/sessions/{companyId}/{phoneIndex}/commands/{commandId}``
* ``GET  /api/admin/sessions``, ``GET /api/admin/sessions/events`` — operators, all companies
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

import phonenumbers
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bisnesgpt.api.auth import AdminPrincipal, CurrentPrincipal, Principal
from bisnesgpt.api.session_events import CLOSED, SessionEventHub, sse
from bisnesgpt.coordination.channels import PROCESS_MESSAGE, publish
from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.engines.wwebjs import store as sessions_store
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.manager import SESSION_COMMAND_MESSAGE
from bisnesgpt.engines.wwebjs.qr import png_from_data_url
from bisnesgpt.processes.context import ProcessContext

SESSION_VIEW = """
SELECT pc.company_id, pc.phone_index, coalesce(pc.connection_type, 'wwebjs') AS connection_type,
       pc.display_phone_number, ps.status, ps.phone_number, ps.last_seen, ps.metadata, ps.updated_at,
       ws.desired_state, ws.breaker_tripped_at, ws.breaker_reason, ws.last_ready_at, ws.stopped_reason,
       (ws.auth_state IS NOT NULL) AS paired, pl.holder, pl.expires_at
FROM phone_configs pc
LEFT JOIN phone_status ps ON ps.company_id = pc.company_id AND ps.phone_index = pc.phone_index
LEFT JOIN wwebjs_sessions ws ON ws.company_id = pc.company_id AND ws.phone_index = pc.phone_index
LEFT JOIN process_leases pl ON pl.name = 'wwebjs:session:' || pc.company_id || ':' || pc.phone_index
                           AND pl.expires_at > now()
WHERE ($1::text IS NULL OR pc.company_id = $1) AND ($2::int IS NULL OR pc.phone_index = $2)
ORDER BY pc.company_id, pc.phone_index
"""
COMPANY_EXISTS = "SELECT 1 FROM companies WHERE id = $1"

CompanyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["acme"])]
PhoneIndex = Annotated[int, Path(ge=0, le=1000, examples=[0])]
Wait = Annotated[float, Query(ge=0, le=30, description="seconds to wait for the wwebjs process to act")]
Action = Literal["start", "stop", "restart", "logout"]
HIDDEN_METADATA = ("qrCode",)
LIVE_STATUSES = frozenset({"initializing", "qr", "pairing_code", "authenticated", "ready"})


class PairingCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phoneNumber: str = Field(min_length=5, max_length=32, examples=["+60123456789"],
                             description="the WhatsApp number to link, international format")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def session_view(row: Any) -> dict[str, Any]:
    """What the API shows of a session (the QR itself only through …/qr)."""
    metadata = dict(row["metadata"] or {})
    status = row["status"] or "pending"
    owner = row["holder"]
    view: dict[str, Any] = {
        "companyId": row["company_id"],
        "phoneIndex": row["phone_index"],
        "connectionType": row["connection_type"],
        "status": status,
        "phoneNumber": row["phone_number"] or row["display_phone_number"],
        "lastSeen": _iso(row["last_seen"]),
        "updatedAt": _iso(row["updated_at"]),
        "qrAvailable": status == "qr" and bool(metadata.get("qrCode")),
        "pairingCode": metadata.get("pairingCode") if status == "pairing_code" else None,
        "reason": metadata.get("reason"),
        "retryAt": metadata.get("retryAt"),
        "desiredState": row["desired_state"] or "running",
        "paired": bool(row["paired"]),
        "breaker": {"open": row["breaker_tripped_at"] is not None, "reason": row["breaker_reason"],
                    "trippedAt": _iso(row["breaker_tripped_at"])},
        "lastReadyAt": _iso(row["last_ready_at"]),
        "owner": owner,
        # A status nobody drives any more (its process died and no one took over yet).
        "stale": owner is None and status in LIVE_STATUSES,
        "metadata": {k: v for k, v in metadata.items() if k not in HIDDEN_METADATA},
    }
    return view


def command_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "companyId": row["company_id"], "phoneIndex": row["phone_index"],
            "action": row["action"], "args": row["args"], "state": row["state"], "result": row["result"],
            "requestedBy": row["requested_by"], "handledBy": row["handled_by"],
            "createdAt": _iso(row["created_at"]), "handledAt": _iso(row["handled_at"]),
            "url": f"/api/sessions/{row['company_id']}/{row['phone_index']}/commands/{row['id']}"}


def normalise_phone(raw: str) -> str:
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    try:
        parsed = phonenumbers.parse("+" + digits if not text.startswith("+") else text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed("phoneNumber is not a phone number", errors=[
            {"field": "phoneNumber", "message": str(exc)}]) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationFailed("phoneNumber is not a possible phone number", errors=[
            {"field": "phoneNumber", "message": "not a possible number (international format, e.g. +60123456789)"}])
    return f"{parsed.country_code}{parsed.national_number}"


def requester(principal: Principal) -> str:
    """Who asked for a session command, as recorded in ``wwebjs_session_commands.requested_by``."""
    return "admin" if principal.is_admin else f"key:{principal.key_id}"


async def run_session_command(ctx: ProcessContext, key: SessionKey, action: str, args: dict[str, Any], *,
                              requested_by: str, wait: float) -> dict[str, Any]:
    """Record what the operator wants, queue the command, wake the wwebjs processes, wait.

    The one path for session commands (the session API and the dashboard): the API never
    calls into a wwebjs process; whichever process owns the session carries the command out
    and writes its result, awaited here for up to ``wait`` seconds (the row is returned
    still ``pending`` if it is not done by then).
    """
    async with ctx.db.transaction() as conn:
        if action in ("start", "restart", "pairing_code"):
            await sessions_store.set_desired_state(conn, key, "running")
        elif action == "stop":
            await sessions_store.set_desired_state(conn, key, "stopped", "stopped by operator")
        command = await sessions_store.insert_command(conn, key, action, args, requested_by)
    await publish(ctx.redis, PROCESS_MESSAGE, {"processName": ctx.process_name, "processId": ctx.pid,
                                                "messageType": SESSION_COMMAND_MESSAGE, "timestamp":
                                                int(time.time() * 1000), "data": {"commandId": command["id"],
                                                                                  "companyId": key.company_id,
                                                                                  "phoneIndex": key.phone_index,
                                                                                  "action": action}})
    deadline = time.monotonic() + wait
    while command["state"] == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        async with ctx.db.connection() as conn:
            command = await sessions_store.load_command(conn, key, command["id"]) or command
    return dict(command)


class SessionRoutes:
    """The session API's routes, over this process's context and live event hub."""

    def __init__(self, ctx: ProcessContext, hub: SessionEventHub) -> None:
        self.ctx = ctx
        self.hub = hub
        self.router = APIRouter(tags=["sessions"])
        self._routes()

    # --- helpers ----------------------------------------------------------------------------------

    async def _rows(self, company_id: str | None, phone_index: int | None = None) -> list[Any]:
        async with self.ctx.db.connection() as conn:
            if company_id is not None and await conn.fetchval(COMPANY_EXISTS, company_id) is None:
                raise NotFound("company not found")
            return list(await conn.fetch(SESSION_VIEW, company_id, phone_index))

    async def _session_row(self, principal: Principal, company_id: str, phone_index: int) -> Any:
        principal.require_company(company_id)
        rows = await self._rows(company_id, phone_index)
        if not rows:
            raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
        row = rows[0]
        if row["connection_type"] != "wwebjs":
            raise Conflict(f"phone {phone_index} uses connection type {row['connection_type']!r}; "
                           "WhatsApp Web sessions exist only for wwebjs phones")
        return row

    async def _command(self, principal: Principal, company_id: str, phone_index: int,
                       action: str, args: dict[str, Any], wait: float) -> Response:
        await self._session_row(principal, company_id, phone_index)
        command = await run_session_command(self.ctx, SessionKey(company_id, phone_index), action, args,
                                            requested_by=requester(principal), wait=wait)
        view = command_view(command)
        if command["state"] == "pending":
            return JSONResponse({"command": view, "status": "accepted",
                                 "detail": "queued for the wwebjs process that owns this session"},
                                status_code=202, headers={"Location": view["url"]})
        if command["state"] == "failed":
            error = (command["result"] or {}).get("error", "the command failed")
            raise Conflict(f"{action} failed: {error}", extra={"command": view})
        return JSONResponse({"command": view, "status": "done", "result": command["result"]})

    def _stream(self, request: Request, company_id: str | None, initial: list[dict[str, Any]]) -> StreamingResponse:
        hub = self.hub
        subscription = hub.subscribe(company_id)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 3000\n\n"
                for view in initial:
                    yield sse("status_update", {"eventType": "status_update", "snapshot": True, **view})
                while True:
                    if await request.is_disconnected():
                        return
                    try:
                        event = await asyncio.wait_for(subscription.queue.get(), 15)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is CLOSED:
                        return
                    yield sse(str(event.get("eventType")), event)
            finally:
                hub.unsubscribe(subscription)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- routes -------------------------------------------------------------------------------------

    def _routes(self) -> None:
        router = self.router

        @router.get("/api/admin/sessions", summary="Every wwebjs session of every company (operators)")
        async def all_sessions(request: Request, _admin: AdminPrincipal) -> dict[str, Any]:
            rows = await self._rows(None)
            return {"sessions": [session_view(r) for r in rows if r["connection_type"] == "wwebjs"]}

        @router.get("/api/admin/sessions/events", summary="Live session events of every company (SSE, operators)",
                    response_class=StreamingResponse)
        async def all_events(request: Request, _admin: AdminPrincipal) -> StreamingResponse:
            rows = await self._rows(None)
            return self._stream(request, None, [session_view(r) for r in rows if r["connection_type"] == "wwebjs"])

        @router.get("/api/sessions/{company_id}", summary="The company's WhatsApp Web sessions")
        async def company_sessions(request: Request, principal: CurrentPrincipal,
                                   company_id: CompanyId) -> dict[str, Any]:
            principal.require_company(company_id)
            rows = await self._rows(company_id)
            return {"companyId": company_id,
                    "sessions": [session_view(r) for r in rows if r["connection_type"] == "wwebjs"]}

        @router.get("/api/sessions/{company_id}/events", summary="Live session events of the company (SSE)",
                    response_class=StreamingResponse)
        async def company_events(request: Request, principal: CurrentPrincipal,
                                 company_id: CompanyId) -> StreamingResponse:
            principal.require_company(company_id)
            rows = await self._rows(company_id)
            return self._stream(request, company_id,
                                [session_view(r) for r in rows if r["connection_type"] == "wwebjs"])

        @router.get("/api/sessions/{company_id}/{phone_index}", summary="One phone's WhatsApp Web session")
        async def one_session(request: Request, principal: CurrentPrincipal, company_id: CompanyId,
                              phone_index: PhoneIndex) -> dict[str, Any]:
            return session_view(await self._session_row(principal, company_id, phone_index))

        @router.get("/api/sessions/{company_id}/{phone_index}/qr",
                    summary="The QR code to scan: image/png, or JSON with a PNG data URL",
                    responses={200: {"content": {"image/png": {}, "application/json": {}}},
                               404: {"description": "the session shows no QR code now"}})
        async def qr(request: Request, principal: CurrentPrincipal, company_id: CompanyId,
                     phone_index: PhoneIndex,
                     format: Annotated[Literal["png", "json"] | None, Query()] = None) -> Response:
            row = await self._session_row(principal, company_id, phone_index)
            metadata = row["metadata"] or {}
            status = row["status"] or "pending"
            if status != "qr" or not metadata.get("qrCode"):
                raise NotFound(f"no QR code: the session is {status}"
                               + (" (use the pairing code)" if status == "pairing_code" else ""))
            wants_png = format == "png" or (format is None and "image/png" in request.headers.get("accept", ""))
            if wants_png:
                return Response(png_from_data_url(metadata["qrCode"]), media_type="image/png",
                                headers={"Cache-Control": "no-store"})
            return JSONResponse({"companyId": company_id, "phoneIndex": phone_index, "status": status,
                                 "qrCode": metadata["qrCode"], "updatedAt": _iso(row["updated_at"])},
                                headers={"Cache-Control": "no-store"})

        @router.post("/api/sessions/{company_id}/{phone_index}/pairing-code",
                     summary="Link by phone number: request a pairing code to type on the phone")
        async def pairing_code(request: Request, principal: CurrentPrincipal, company_id: CompanyId,
                               phone_index: PhoneIndex, body: PairingCodeRequest, wait: Wait = 20) -> Response:
            phone = normalise_phone(body.phoneNumber)
            return await self._command(principal, company_id, phone_index, "pairing_code",
                                       {"phoneNumber": phone}, wait)

        @router.get("/api/sessions/{company_id}/{phone_index}/commands/{command_id}",
                    summary="A session command and its result")
        async def command(request: Request, principal: CurrentPrincipal, company_id: CompanyId,
                          phone_index: PhoneIndex, command_id: int) -> dict[str, Any]:
            await self._session_row(principal, company_id, phone_index)
            async with self.ctx.db.connection() as conn:
                found = await sessions_store.load_command(conn, SessionKey(company_id, phone_index), command_id)
            if found is None:
                raise NotFound("command not found")
            return {"command": command_view(found)}

        @router.post("/api/sessions/{company_id}/{phone_index}/{action}",
                     summary="start | stop | restart | logout a phone's session",
                     description="start/restart also clear an open circuit breaker (an operator acted).")
        async def act(request: Request, principal: CurrentPrincipal, company_id: CompanyId, phone_index: PhoneIndex,
                      action: Action, wait: Wait = 10) -> Response:
            return await self._command(principal, company_id, phone_index, action, {}, wait)
