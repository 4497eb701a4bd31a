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
* ``GET  /api/sessions/{companyId}/{phoneIndex}`` — one session (and its sends today against its caps)
* ``GET  /api/sessions/{companyId}/{phoneIndex}/qr`` — the QR as ``image/png`` (``Accept`` or
  ``?format=png``) or JSON with the PNG data URL
* ``POST /api/sessions/{companyId}/{phoneIndex}/{start|stop|restart|logout}``
* ``POST /api/sessions/{companyId}/{phoneIndex}/pairing-code`` ``{"phoneNumber": "+60…"}``
* ``GET  /api/sessions/{companyId}/{phoneIndex}/commands/{commandId}``
* ``GET  /api/admin/sessions``, ``GET /api/admin/sessions/events`` — operators, all companies
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import JsonValue
from typing_extensions import TypedDict

from bisnesgpt.api.auth import AdminPrincipal, CurrentPrincipal, Principal
from bisnesgpt.api.phone_sessions import (
    PhoneSession,
    company_exists,
    load_phone_sessions,
    load_wwebjs_phone,
)
from bisnesgpt.api.schemas.antiban import SendingTodayView
from bisnesgpt.api.schemas.common import JsonObject, iso
from bisnesgpt.api.session_commands import (
    CommandView,
    PairingCodeRequest,
    SessionAction,
    load_command,
    normalise_phone,
    requester,
    run_session_command,
)
from bisnesgpt.api.session_events import CLOSED, REVOKED, SessionEventHub, put_dropping_oldest, sse
from bisnesgpt.api.stream_guard import StreamGuard
from bisnesgpt.core.errors import Conflict, NotFound
from bisnesgpt.engines.wwebjs.antiban import phone_sending
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.qr import png_from_data_url
from bisnesgpt.engines.wwebjs.store import CommandAction, DesiredState
from bisnesgpt.phones.store import PhoneStatus
from bisnesgpt.processes.context import ProcessContext

CompanyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["acme"])]
PhoneIndex = Annotated[int, Path(ge=0, le=1000, examples=[0])]
Wait = Annotated[float, Query(ge=0, le=30, description="seconds to wait for the wwebjs process to act")]
KEEPALIVE_S = 15
REVOKED_DETAIL = "the API key was revoked or its company disabled: this stream has ended"


class BreakerView(TypedDict):
    """The session's circuit breaker (open: the session stopped itself after flapping)."""

    open: bool
    reason: str | None
    trippedAt: str | None


class SessionView(TypedDict):
    """What the API shows of a session (the QR itself only through ``…/qr``)."""

    companyId: str
    phoneIndex: int
    connectionType: str
    status: PhoneStatus
    phoneNumber: str | None
    lastSeen: str | None
    updatedAt: str | None
    qrAvailable: bool
    pairingCode: JsonValue
    reason: JsonValue
    retryAt: JsonValue
    desiredState: DesiredState
    paired: bool
    breaker: BreakerView
    lastReadyAt: str | None
    owner: str | None
    stale: bool
    metadata: JsonObject


class SessionDetail(SessionView):
    """One session, with its sends today against the phone's anti-ban caps."""

    sending: SendingTodayView


class SessionList(TypedDict):
    """Every wwebjs session of every company."""

    sessions: list[SessionView]


class CompanySessions(TypedDict):
    """A company's wwebjs sessions."""

    companyId: str
    sessions: list[SessionView]


class CommandEnvelope(TypedDict):
    """One session command."""

    command: CommandView


def session_view(session: PhoneSession) -> SessionView:
    """A session as the session API shows it."""
    return {
        "companyId": session.company_id,
        "phoneIndex": session.phone_index,
        "connectionType": session.connection_type,
        "status": session.status,
        "phoneNumber": session.number,
        "lastSeen": iso(session.last_seen),
        "updatedAt": iso(session.status_updated_at),
        "qrAvailable": session.qr_available,
        "pairingCode": session.pairing_code,
        "reason": session.metadata.get("reason"),
        "retryAt": session.metadata.get("retryAt"),
        "desiredState": session.desired_state,
        "paired": session.paired,
        "breaker": {"open": session.breaker_tripped_at is not None, "reason": session.breaker_reason,
                    "trippedAt": iso(session.breaker_tripped_at)},
        "lastReadyAt": iso(session.last_ready_at),
        "owner": session.owner,
        "stale": session.stale,
        "metadata": session.shown_metadata(),
    }


class SessionRoutes:
    """The session API's routes, over this process's context and live event hub."""

    def __init__(self, ctx: ProcessContext, hub: SessionEventHub, guard: StreamGuard) -> None:
        self.ctx = ctx
        self.hub = hub
        self.guard = guard
        self.router = APIRouter(tags=["sessions"])
        self._routes()

    # --- helpers ----------------------------------------------------------------------------------

    async def _sessions(self, company_id: str | None) -> list[SessionView]:
        """The wwebjs sessions of a company (404 if there is no such company) or of all."""
        async with self.ctx.db.connection() as conn:
            if company_id is not None and not await company_exists(conn, company_id):
                raise NotFound("company not found")
            phones = await load_phone_sessions(conn, company_id)
        return [session_view(p) for p in phones if p.is_wwebjs]

    async def _session(self, principal: Principal, company_id: str, phone_index: int) -> PhoneSession:
        """One phone's session: 404 for a phone not configured (or not the caller's), 409 if not wwebjs."""
        principal.require_company(company_id)
        async with self.ctx.db.connection() as conn:
            return await load_wwebjs_phone(conn, company_id, phone_index,
                                           only="WhatsApp Web sessions exist only for wwebjs phones")

    async def _command(self, principal: Principal, company_id: str, phone_index: int,
                       action: CommandAction, args: JsonObject, wait: float) -> Response:
        await self._session(principal, company_id, phone_index)
        command = await run_session_command(self.ctx, SessionKey(company_id, phone_index), action, args,
                                            requested_by=requester(principal), wait=wait)
        view = command.as_json()
        if command.state == "pending":
            return JSONResponse({"command": view, "status": "accepted",
                                 "detail": "queued for the wwebjs process that owns this session"},
                                status_code=202, headers={"Location": view["url"]})
        if command.state == "failed":
            raise Conflict(command.failure, extra={"command": view})
        return JSONResponse({"command": view, "status": "done", "result": command.result})

    def _stream(self, request: Request, principal: Principal, company_id: str | None,
                initial: list[SessionView]) -> StreamingResponse:
        hub = self.hub
        subscription = hub.subscribe(company_id)

        def revoked() -> None:
            put_dropping_oldest(subscription.queue, REVOKED)

        watch = self.guard.watch(principal, revoked)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 3000\n\n"
                for view in initial:
                    yield sse("status_update", {"eventType": "status_update", "snapshot": True, **view})
                while True:
                    if await request.is_disconnected():
                        return
                    try:
                        event = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is CLOSED:
                        return
                    if event is REVOKED:
                        yield sse("error", {"error": "unauthorized", "detail": REVOKED_DETAIL})
                        return
                    yield sse(str(event.get("eventType")), event)
            finally:
                hub.unsubscribe(subscription)
                self.guard.forget(watch)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- routes -------------------------------------------------------------------------------------

    def _routes(self) -> None:
        router = self.router

        @router.get("/api/admin/sessions", summary="Every wwebjs session of every company (operators)")
        async def all_sessions(_admin: AdminPrincipal) -> SessionList:
            return {"sessions": await self._sessions(None)}

        @router.get("/api/admin/sessions/events", summary="Live session events of every company (SSE, operators)",
                    response_class=StreamingResponse)
        async def all_events(request: Request, admin: AdminPrincipal) -> StreamingResponse:
            return self._stream(request, admin, None, await self._sessions(None))

        @router.get("/api/sessions/{company_id}", summary="The company's WhatsApp Web sessions")
        async def company_sessions(principal: CurrentPrincipal, company_id: CompanyId) -> CompanySessions:
            principal.require_company(company_id)
            return {"companyId": company_id, "sessions": await self._sessions(company_id)}

        @router.get("/api/sessions/{company_id}/events", summary="Live session events of the company (SSE)",
                    response_class=StreamingResponse)
        async def company_events(request: Request, principal: CurrentPrincipal,
                                 company_id: CompanyId) -> StreamingResponse:
            principal.require_company(company_id)
            return self._stream(request, principal, company_id, await self._sessions(company_id))

        @router.get("/api/sessions/{company_id}/{phone_index}", summary="One phone's WhatsApp Web session")
        async def one_session(principal: CurrentPrincipal, company_id: CompanyId,
                              phone_index: PhoneIndex) -> SessionDetail:
            view = session_view(await self._session(principal, company_id, phone_index))
            async with self.ctx.db.connection() as conn:
                today = await phone_sending(conn, self.ctx.settings, company_id, phone_index)
            return SessionDetail(**view, sending=SendingTodayView.of(today))

        @router.get("/api/sessions/{company_id}/{phone_index}/qr",
                    summary="The QR code to scan: image/png, or JSON with a PNG data URL",
                    responses={200: {"content": {"image/png": {}, "application/json": {}}},
                               404: {"description": "the session shows no QR code now"}})
        async def qr(request: Request, principal: CurrentPrincipal, company_id: CompanyId,
                     phone_index: PhoneIndex,
                     format: Annotated[Literal["png", "json"] | None, Query()] = None) -> Response:
            session = await self._session(principal, company_id, phone_index)
            qr_code = session.qr_code
            if qr_code is None:
                raise NotFound(f"no QR code: the session is {session.status}"
                               + (" (use the pairing code)" if session.status == "pairing_code" else ""))
            wants_png = format == "png" or (format is None and "image/png" in request.headers.get("accept", ""))
            if wants_png:
                return Response(png_from_data_url(qr_code), media_type="image/png",
                                headers={"Cache-Control": "no-store"})
            return JSONResponse({"companyId": company_id, "phoneIndex": phone_index, "status": session.status,
                                 "qrCode": qr_code, "updatedAt": iso(session.status_updated_at)},
                                headers={"Cache-Control": "no-store"})

        @router.post("/api/sessions/{company_id}/{phone_index}/pairing-code",
                     summary="Link by phone number: request a pairing code to type on the phone")
        async def pairing_code(principal: CurrentPrincipal, company_id: CompanyId, phone_index: PhoneIndex,
                               body: PairingCodeRequest, wait: Wait = 20) -> Response:
            phone = normalise_phone(body.phoneNumber)
            return await self._command(principal, company_id, phone_index, "pairing_code",
                                       {"phoneNumber": phone}, wait)

        @router.get("/api/sessions/{company_id}/{phone_index}/commands/{command_id}",
                    summary="A session command and its result")
        async def command(principal: CurrentPrincipal, company_id: CompanyId, phone_index: PhoneIndex,
                          command_id: int) -> CommandEnvelope:
            await self._session(principal, company_id, phone_index)
            found = await load_command(self.ctx, SessionKey(company_id, phone_index), command_id)
            if found is None:
                raise NotFound("command not found")
            return {"command": found.as_json()}

        @router.post("/api/sessions/{company_id}/{phone_index}/{action}",
                     summary="start | stop | restart | logout a phone's session",
                     description="start/restart also clear an open circuit breaker (an operator acted).")
        async def act(principal: CurrentPrincipal, company_id: CompanyId, phone_index: PhoneIndex,
                      action: SessionAction, wait: Wait = 10) -> Response:
            return await self._command(principal, company_id, phone_index, action, {}, wait)
