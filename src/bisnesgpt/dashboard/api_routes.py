"""The dashboard's JSON routes (``/dashboard/api/…``): what the pages read and the actions.

Authentication: the session cookie (actions then need the ``X-CSRF-Token`` header) or an
API key header like every other API route. Processes, events, charts and queues are for
operators (403 otherwise). Phones and messages are scoped: a company key reaches its own
company only, and another company's phone or message answers 404, exactly as the public API.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bisnesgpt.api.session_routes import PairingCodeRequest, normalise_phone, run_session_command
from bisnesgpt.core.errors import Conflict, NotFound, ServiceUnavailable
from bisnesgpt.dashboard import charts, messages, phones
from bisnesgpt.dashboard.auth import Caller, dashboard_caller, dashboard_operator
from bisnesgpt.dashboard.live import LiveHub
from bisnesgpt.dashboard.queues import QueueAdmin
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.qr import png_from_data_url
from bisnesgpt.health.overview import fetch_overview
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.context import ProcessContext

CompanyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
CompanyQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
PhoneIndex = Annotated[int, Path(ge=0, le=1000)]
QueueName = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$")]
JobId = Annotated[str, Path(min_length=1, max_length=256)]
SessionAction = Literal["start", "stop", "restart", "logout"]
Severity = Literal["warning", "error", "critical", "info"]
SEVERITIES = ("info", "warning", "error", "critical")
COMMAND_WAIT_S = 10.0

EVENTS = """
SELECT id, process_name, event_type, event_data, severity, timestamp FROM process_events
WHERE severity = ANY($1::text[]) AND ($2::text IS NULL OR process_name = $2)
ORDER BY id DESC LIMIT $3
"""


class Confirmed(BaseModel):
    """Body of a destructive action: the page's confirmation dialog sets it."""

    model_config = ConfigDict(extra="forbid")
    confirm: bool = Field(description="true: the operator confirmed this action")


def _confirmed(body: Confirmed | None) -> None:
    if body is None or not body.confirm:
        raise Conflict("confirm the action: send {\"confirm\": true}")


def scope(caller: Caller, company_id: str | None) -> str | None:
    """The company a request may see: the asked one (if allowed), the caller's, or all (operators)."""
    if company_id is not None:
        caller.principal.require_company(company_id)
        return company_id
    return caller.principal.company_id


async def overview_snapshot(ctx: ProcessContext) -> dict[str, Any]:
    overview = await fetch_overview(ctx.db, ctx.settings, legacy=ctx.role == "legacy")
    return {**overview.as_dict(), "servedBy": ctx.process_name}


async def recent_events(ctx: ProcessContext, *, severities: tuple[str, ...], process: str | None = None,
                        limit: int = 50) -> list[dict[str, Any]]:
    rows = await ctx.db.fetch(EVENTS, list(severities), process, limit)
    return [{"id": r["id"], "processName": r["process_name"], "type": r["event_type"], "data": r["event_data"],
             "severity": r["severity"], "at": r["timestamp"].isoformat()} for r in rows]


Who = Annotated[Caller, Depends(dashboard_caller)]
Operator = Annotated[Caller, Depends(dashboard_operator)]


def ctx_of(request: Request) -> ProcessContext:
    ctx: ProcessContext = request.app.state.ctx
    return ctx


def build_api(hub: LiveHub, phone_config: PhoneConfigService) -> APIRouter:
    router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

    @router.get("/me", summary="The signed-in principal")
    async def me(who: Who) -> dict[str, Any]:
        p = who.principal
        return {"kind": p.kind, "companyId": p.company_id, "keyId": p.key_id,
                "expiresAt": who.session.expires_at if who.session else None}

    _process_routes(router)
    _queue_routes(router)
    _phone_routes(router, phone_config)
    _message_routes(router)

    @router.get("/live", summary="Live updates (Server-Sent Events)", response_class=StreamingResponse)
    async def live(request: Request, who: Who) -> StreamingResponse:
        watcher = hub.watch(who.principal)
        hello = {"kind": who.principal.kind, "companyId": who.principal.company_id,
                 "servedBy": ctx_of(request).process_name}
        return StreamingResponse(hub.stream(watcher, request.is_disconnected, hello), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _process_routes(router: APIRouter) -> None:
    @router.get("/processes", summary="Every process (judged like /health/all) and recent warnings/errors")
    async def processes(request: Request, _who: Operator) -> dict[str, Any]:
        ctx = ctx_of(request)
        return {"overview": await overview_snapshot(ctx),
                "events": await recent_events(ctx, severities=("warning", "error", "critical"), limit=30)}

    @router.get("/events", summary="Process events, newest first")
    async def events(request: Request, _who: Operator,
                     severity: Annotated[Severity, Query(description="this severity and worse")] = "warning",
                     process: Annotated[str | None, Query(max_length=64)] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        wanted = SEVERITIES[SEVERITIES.index(severity):]
        return {"events": await recent_events(ctx_of(request), severities=wanted, process=process, limit=limit)}

    @router.get("/charts", summary="Time series from process_metrics for the last hour or day")
    async def chart_data(request: Request, _who: Operator,
                         range: Annotated[Literal["hour", "day"], Query()] = "hour") -> dict[str, Any]:
        return await charts.chart_data(ctx_of(request).db, range)


def _queue_routes(router: APIRouter) -> None:
    @router.get("/queues", summary="Every queue's counts, paused flag and last-minute rates")
    async def queues(request: Request, _who: Operator) -> dict[str, Any]:
        return {"queues": await QueueAdmin(ctx_of(request)).overview()}

    @router.get("/queues/{queue}/failed", summary="A queue's failed jobs, newest first")
    async def failed(request: Request, _who: Operator, queue: QueueName,
                     start: Annotated[int, Query(ge=0)] = 0,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        return await QueueAdmin(ctx_of(request)).failed_jobs(queue, start=start, limit=limit)

    @router.post("/queues/{queue}/jobs/{job_id}/retry", summary="Retry a failed job (send jobs: message re-queued)")
    async def retry(request: Request, who: Operator, queue: QueueName, job_id: JobId,
                    body: Confirmed | None = None) -> dict[str, Any]:
        _confirmed(body)
        return await QueueAdmin(ctx_of(request)).retry(queue, job_id, by=who.label)

    @router.post("/queues/{queue}/jobs/{job_id}/remove", summary="Remove a job (not while it is active)")
    async def remove(request: Request, who: Operator, queue: QueueName, job_id: JobId,
                     body: Confirmed | None = None) -> dict[str, Any]:
        _confirmed(body)
        return await QueueAdmin(ctx_of(request)).remove(queue, job_id, by=who.label)

    @router.post("/queues/{queue}/retry-failed", summary="Retry every failed job (up to 1000 per call)")
    async def retry_failed(request: Request, who: Operator, queue: QueueName,
                           body: Confirmed | None = None) -> dict[str, Any]:
        _confirmed(body)
        return await QueueAdmin(ctx_of(request)).retry_all_failed(queue, by=who.label)

    @router.post("/queues/{queue}/pause", summary="Pause the queue (workers finish what they hold)")
    async def pause(request: Request, who: Operator, queue: QueueName, body: Confirmed | None = None) \
            -> dict[str, Any]:
        _confirmed(body)
        return await QueueAdmin(ctx_of(request)).pause(queue, by=who.label)

    @router.post("/queues/{queue}/resume", summary="Resume a paused queue")
    async def resume(request: Request, who: Operator, queue: QueueName, body: Confirmed | None = None) \
            -> dict[str, Any]:
        _confirmed(body)
        return await QueueAdmin(ctx_of(request)).resume(queue, by=who.label)

    @router.post("/queues/{queue}/clean-completed", summary="Remove the queue's completed jobs")
    async def clean(request: Request, who: Operator, queue: QueueName, body: Confirmed | None = None) \
            -> dict[str, Any]:
        _confirmed(body)
        return await QueueAdmin(ctx_of(request)).clean_completed(queue, by=who.label)


def _phone_routes(router: APIRouter, phone_config: PhoneConfigService) -> None:
    @router.get("/phones", summary="Phones with their connection status, and the counts")
    async def phone_list(request: Request, who: Who, company: CompanyQuery = None,
                         type: Annotated[Literal["wwebjs", "cloud"] | None, Query()] = None) -> dict[str, Any]:
        ctx = ctx_of(request)
        company_id = scope(who, company)
        views, counts = await phones.list_phones(ctx, company_id)
        if type is not None:
            views = [v for v in views if v["kind"] == type]
        return {"companies": await phones.companies(ctx, company_id), "counts": counts, "phones": views}

    @router.get("/phones/{company_id}/{phone_index}", summary="One phone")
    async def phone(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex) -> dict[str, Any]:
        who.principal.require_company(company_id, "phone")
        views, _counts = await phones.list_phones(ctx_of(request), company_id, phone_index)
        if not views:
            raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
        return views[0]

    @router.get("/phones/{company_id}/{phone_index}/qr.png", summary="The QR code to scan (image/png)",
                response_class=Response)
    async def qr(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex) -> Response:
        who.principal.require_company(company_id, "phone")
        data_url = await phones.qr_data_url(ctx_of(request), company_id, phone_index)
        try:
            png = png_from_data_url(data_url)
        except ValueError as exc:
            raise ServiceUnavailable("the stored QR code is not a PNG image") from exc
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def wwebjs_phone(ctx: ProcessContext, who: Caller, company_id: str, phone_index: int) -> SessionKey:
        who.principal.require_company(company_id, "phone")
        row = await phones.one_phone(ctx, company_id, phone_index)
        if row["connection_type"] != "wwebjs":
            raise Conflict(f"phone {phone_index} uses {row['connection_type']!r}: sessions exist only for wwebjs")
        return SessionKey(company_id, phone_index)

    @router.post("/phones/{company_id}/{phone_index}/session/{action}",
                 summary="start | stop | restart | logout a WhatsApp Web session (through the session commands)")
    async def session_action(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                             action: SessionAction, body: Confirmed | None = None) -> dict[str, Any]:
        if action in ("stop", "logout"):
            _confirmed(body)
        ctx = ctx_of(request)
        key = await wwebjs_phone(ctx, who, company_id, phone_index)
        command = await run_session_command(ctx, key, action, {}, requested_by=f"dashboard:{who.label}",
                                            wait=COMMAND_WAIT_S)
        return _command_answer(command)

    @router.post("/phones/{company_id}/{phone_index}/pairing-code",
                 summary="Link by phone number: request a pairing code")
    async def pairing_code(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                           body: PairingCodeRequest) -> dict[str, Any]:
        ctx = ctx_of(request)
        key = await wwebjs_phone(ctx, who, company_id, phone_index)
        command = await run_session_command(ctx, key, "pairing_code", {"phoneNumber": normalise_phone(
            body.phoneNumber)}, requested_by=f"dashboard:{who.label}", wait=20)
        return _command_answer(command)

    @router.post("/phones/{company_id}/{phone_index}/verify",
                 summary="Ask the Cloud API for the number's status and quality")
    async def verify(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex) -> dict[str, Any]:
        who.principal.require_company(company_id, "phone")
        ctx = ctx_of(request)
        return {"verification": await phones.verify_cloud_phone(ctx, ctx.settings, company_id, phone_index)}

    @router.post("/phones/{company_id}/{phone_index}/remove", summary="Remove a phone's configuration")
    async def remove_phone(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                           body: Confirmed | None = None) -> dict[str, Any]:
        _confirmed(body)
        who.principal.require_company(company_id, "phone")
        await phone_config.remove(company_id, phone_index)
        await ctx_of(request).events.record("dashboard.phone.remove", {
            "companyId": company_id, "phoneIndex": phone_index, "by": who.label}, "warning")
        return {"removed": True, "companyId": company_id, "phoneIndex": phone_index}


def _message_routes(router: APIRouter) -> None:
    @router.get("/messages", summary="Find messages by id, provider id or chat (or the latest)")
    async def message_search(request: Request, who: Who, company: CompanyQuery = None,
                             q: Annotated[str | None, Query(max_length=256)] = None,
                             status: Annotated[str | None, Query(pattern=r"^[a-z]{1,16}$")] = None) -> dict[str, Any]:
        return await messages.search(ctx_of(request), scope(who, company), q, status)

    @router.get("/messages/{company_id}/{message_id}", summary="A message: timeline, error, webhook deliveries")
    async def message_detail(request: Request, who: Who, company_id: CompanyId,
                             message_id: Annotated[str, Path(min_length=1, max_length=256)]) -> dict[str, Any]:
        who.principal.require_company(company_id, "message")
        return await messages.detail(ctx_of(request), company_id, message_id)


def _command_answer(command: dict[str, Any]) -> dict[str, Any]:
    state = command["state"]
    if state == "failed":
        error = (command["result"] or {}).get("error", "the command failed")
        raise Conflict(f"{command['action']} failed: {error}")
    return {"commandId": command["id"], "action": command["action"], "state": state, "result": command["result"],
            "detail": "queued for the wwebjs process that owns this session" if state == "pending" else "done"}
