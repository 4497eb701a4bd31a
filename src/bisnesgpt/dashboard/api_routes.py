"""The dashboard's JSON routes (``/dashboard/api/…``): what the pages read and the actions.

Authentication: the session cookie (actions then need the ``X-CSRF-Token`` header) or an
API key header like every other API route. Processes, events, charts and queues are for
operators (403 otherwise). Phones and messages are scoped: a company key reaches its own
company only, and another company's phone or message answers 404, exactly as the public API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field
from typing_extensions import TypedDict

from bisnesgpt.api.auth import PrincipalKind
from bisnesgpt.api.schemas.common import JsonObject
from bisnesgpt.api.session_commands import (
    PairingCodeRequest,
    SessionAction,
    SessionCommand,
    normalise_phone,
    run_session_command,
)
from bisnesgpt.core.errors import Conflict, NotFound, ServiceUnavailable
from bisnesgpt.dashboard import attention, charts, messages, phones
from bisnesgpt.dashboard.accounts import account_routes
from bisnesgpt.dashboard.auth import Caller, dashboard_caller, dashboard_operator
from bisnesgpt.dashboard.confirm import Confirmed, require_confirmed
from bisnesgpt.dashboard.error_names import error_name_routes
from bisnesgpt.dashboard.live import LiveHub
from bisnesgpt.dashboard.phone_admin import phone_admin_routes
from bisnesgpt.dashboard.provider_failures import provider_failure_routes
from bisnesgpt.dashboard.provider_webhooks import provider_webhook_routes
from bisnesgpt.dashboard.queue_types import (
    BulkRetried,
    Cleaned,
    FailedJobsPage,
    JobFilter,
    JobRemoved,
    JobsPage,
    JobState,
    Paused,
    Promoted,
    QueueView,
    Retried,
)
from bisnesgpt.dashboard.queues import QueueAdmin
from bisnesgpt.dashboard.trial_send import trial_send_routes
from bisnesgpt.dashboard.webhook_admin import webhook_routes
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.qr import png_from_data_url
from bisnesgpt.engines.wwebjs.store import CommandAction, CommandState
from bisnesgpt.health.overview import fetch_overview
from bisnesgpt.messaging.sending import SendService
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.dashboard")

CompanyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
CompanyQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
PhoneIndex = Annotated[int, Path(ge=0, le=1000)]
QueueName = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$")]
JobId = Annotated[str, Path(min_length=1, max_length=256)]
Severity = Literal["warning", "error", "critical", "info"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")
# Alerts (what happened to the system) and the audit trail (what operators did: dashboard.* events).
EventKind = Literal["alerts", "audit"]
COMMAND_WAIT_S = 10.0
PAIRING_WAIT_S = 20.0

Who = Annotated[Caller, Depends(dashboard_caller)]
Operator = Annotated[Caller, Depends(dashboard_operator)]


class RetryFailed(Confirmed):
    """Body of a bulk retry: confirmed, and optionally only the failed jobs of a company, phone or error code."""

    companyId: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="only this company's jobs")
    phoneIndex: int | None = Field(None, ge=0, le=1000, description="only this phone's jobs")
    errorCode: str | None = Field(None, max_length=64, description="only jobs that failed with this code")


class Me(TypedDict):
    """Who is signed in, and until when (epoch seconds; None for an API key)."""

    kind: PrincipalKind
    companyId: str | None
    keyId: int | None
    expiresAt: float | None


class EventView(TypedDict):
    """A process event."""

    id: int
    processName: str
    type: str
    data: JsonObject
    severity: Severity
    at: str


class Events(TypedDict):
    """Process events, newest first."""

    events: list[EventView]


class Processes(TypedDict):
    """Every process as ``/health/all`` judges it, the recent alerts (warnings and worse, not
    operators' actions) and the audit trail (operators' own actions, every severity)."""

    overview: Mapping[str, object]
    events: list[EventView]
    audit: list[EventView]


class Queues(TypedDict):
    """Every queue."""

    queues: list[QueueView]


class PhoneList(TypedDict):
    """The phones page: the companies to filter by, the counters and the cards."""

    companies: list[phones.Company]
    counts: phones.PhoneCounts
    phones: list[phones.PhoneCard]


class Verified(TypedDict):
    """What the Cloud API said of the number."""

    verification: phones.Verification


class PhoneRemoved(TypedDict):
    """A phone's configuration removed."""

    removed: bool
    companyId: str
    phoneIndex: int


class SessionCommandState(TypedDict):
    """A session command's state (``pending``: the owner has not carried it out yet)."""

    commandId: int
    action: CommandAction
    state: CommandState
    result: JsonObject | None
    detail: str


async def overview_snapshot(ctx: ProcessContext) -> dict[str, object]:
    """Every process as ``/health/all`` judges it, and which api process answered."""
    overview = await fetch_overview(ctx.db, ctx.settings, legacy=ctx.role == "legacy")
    return {**overview.as_dict(), "servedBy": ctx.process_name}


async def recent_events(ctx: ProcessContext, *, severities: tuple[Severity, ...], process: str | None = None,
                        limit: int = 50, kind: EventKind | None = None) -> list[EventView]:
    """Process events of these severities (of one process, or all; alerts, audit or both), newest first."""
    rows = await ctx.db.fetch(SQL.recent_events, list(severities), process, limit, kind)
    return [{"id": r["id"], "processName": r["process_name"], "type": r["event_type"], "data": r["event_data"],
             "severity": r["severity"], "at": r["timestamp"].isoformat()} for r in rows]


def _command_answer(command: SessionCommand) -> SessionCommandState:
    if command.state == "failed":
        raise Conflict(command.failure)
    return {"commandId": command.id, "action": command.action, "state": command.state, "result": command.result,
            "detail": "queued for the wwebjs process that owns this session" if command.state == "pending"
            else "done"}


def build_api(ctx: ProcessContext, hub: LiveHub, phone_config: PhoneConfigService, queues: QueueAdmin,
              sender: SendService) -> APIRouter:
    """``/dashboard/api/…``: what the pages read, the operator actions and the live stream."""
    router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

    @router.get("/me", summary="The signed-in principal")
    async def me(who: Who) -> Me:
        p = who.principal
        return {"kind": p.kind, "companyId": p.company_id, "keyId": p.key_id,
                "expiresAt": who.session.expires_at if who.session else None}

    @router.get("/attention", summary="What needs an operator now: phones, backlogs, failing webhook endpoints")
    async def attention_items(who: Who, company: CompanyQuery = None) -> attention.Attention:
        return await attention.attention(ctx, who.principal.company_scope(company),
                                         paused_queues=await queues.paused_queues())

    account_routes(router, ctx)
    webhook_routes(router, ctx)
    _process_routes(router, ctx)
    _queue_routes(router, queues)
    provider_webhook_routes(router, ctx)
    provider_failure_routes(router, ctx)
    error_name_routes(router)
    _phone_routes(router, ctx, phone_config)
    phone_admin_routes(router, ctx, phone_config)
    trial_send_routes(router, sender)
    _message_routes(router, ctx)

    @router.get("/live", summary="Live updates (Server-Sent Events)", response_class=StreamingResponse)
    async def live(request: Request, who: Who) -> StreamingResponse:
        watcher = hub.watch(who.principal)
        hello = {"kind": who.principal.kind, "companyId": who.principal.company_id, "servedBy": ctx.process_name}
        return StreamingResponse(hub.stream(watcher, request.is_disconnected, hello), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _process_routes(router: APIRouter, ctx: ProcessContext) -> None:
    @router.get("/processes", summary="Every process (judged like /health/all) and recent warnings/errors")
    async def processes(_who: Operator) -> Processes:
        return {"overview": await overview_snapshot(ctx),
                "events": await recent_events(ctx, severities=("warning", "error", "critical"), limit=30,
                                              kind="alerts"),
                "audit": await recent_events(ctx, severities=SEVERITIES, limit=30, kind="audit")}

    @router.get("/events", summary="Process events, newest first")
    async def events(_who: Operator,
                     severity: Annotated[Severity, Query(description="this severity and worse")] = "warning",
                     process: Annotated[str | None, Query(max_length=64)] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     kind: Annotated[EventKind | None, Query(
                         description="alerts: not operators' actions; audit: operators' actions (dashboard.*)")] = None,
                     ) -> Events:
        wanted = SEVERITIES[SEVERITIES.index(severity):]
        return {"events": await recent_events(ctx, severities=wanted, process=process, limit=limit, kind=kind)}

    @router.get("/charts", summary="Time series from process_metrics for the last hour or day")
    async def chart_data(_who: Operator,
                         range: Annotated[charts.RangeName, Query()] = "hour") -> charts.ChartData:
        return await charts.chart_data(ctx.db, range)


# An operator action on a queue (queue name, who) or on one of its jobs (queue name, job id, who).
QueueAction = Callable[[str, str], Awaitable[object]]
JobAction = Callable[[str, str, str], Awaitable[object]]


def _queue_routes(router: APIRouter, queues: QueueAdmin) -> None:
    @router.get("/queues", summary="Every queue's counts, paused flag and last-minute rates", name="queues")
    async def queue_list(_who: Operator) -> Queues:
        return {"queues": await queues.overview()}

    @router.get("/queues/{queue}/jobs", summary="A queue's jobs in one state, newest first, paginated "
                                                 "(failed: filter by company, phone, error code)")
    async def jobs(_who: Operator, queue: QueueName, state: Annotated[JobState, Query()] = "failed",
                   start: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=200)] = 20,
                   company: CompanyQuery = None, phone: Annotated[int | None, Query(ge=0, le=1000)] = None,
                   code: Annotated[str | None, Query(max_length=64)] = None) -> JobsPage:
        return await queues.jobs(queue, state, start=start, limit=limit,
                                 filters=JobFilter(company, phone, code) if state == "failed" else None)

    @router.post("/queues/{queue}/retry-failed", name="retry_failed", response_model=BulkRetried,
                 summary="Retry every failed job (up to 1000 per call), or those of a company / phone / error code")
    async def retry_failed(who: Operator, queue: QueueName, body: RetryFailed | None = None) -> BulkRetried:
        require_confirmed(body)
        assert body is not None
        return await queues.retry_all_failed(queue, who.label,
                                             JobFilter(body.companyId, body.phoneIndex, body.errorCode))

    @router.get("/queues/{queue}/failed", summary="A queue's failed jobs, newest first")
    async def failed(_who: Operator, queue: QueueName, start: Annotated[int, Query(ge=0)] = 0,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> FailedJobsPage:
        return await queues.failed_jobs(queue, start=start, limit=limit)

    # Every action needs the confirmation body and names who did it; one route each.
    job_actions: list[tuple[str, str, type[object], JobAction]] = [
        ("retry", "Retry a failed job (send jobs: message re-queued)", Retried, queues.retry),
        ("remove", "Remove a job (not while it is active)", JobRemoved, queues.remove),
        ("promote", "Move a delayed job to waiting now", Promoted, queues.promote),
    ]
    for verb, summary, answer, job_action in job_actions:
        _add_job_action(router, verb, summary, answer, job_action)
    queue_actions: list[tuple[str, str, str, type[object], QueueAction]] = [
        ("pause", "pause", "Pause the queue (workers finish what they hold)", Paused, queues.pause),
        ("resume", "resume", "Resume a paused queue", Paused, queues.resume),
        ("clean-completed", "clean", "Remove the queue's completed jobs", Cleaned, queues.clean_completed),
    ]
    for path, name, summary, answer, queue_action in queue_actions:
        _add_queue_action(router, path, name, summary, answer, queue_action)


def _add_job_action(router: APIRouter, verb: str, summary: str, answer: type[object], act: JobAction) -> None:
    async def endpoint(who: Operator, queue: QueueName, job_id: JobId, body: Confirmed | None = None) -> object:
        require_confirmed(body)
        return await act(queue, job_id, who.label)

    router.add_api_route(f"/queues/{{queue}}/jobs/{{job_id}}/{verb}", endpoint, methods=["POST"], name=verb,
                         summary=summary, response_model=answer)


def _add_queue_action(router: APIRouter, path: str, name: str, summary: str, answer: type[object],
                      act: QueueAction) -> None:
    async def endpoint(who: Operator, queue: QueueName, body: Confirmed | None = None) -> object:
        require_confirmed(body)
        return await act(queue, who.label)

    router.add_api_route(f"/queues/{{queue}}/{path}", endpoint, methods=["POST"], name=name, summary=summary,
                         response_model=answer)


def _phone_routes(router: APIRouter, ctx: ProcessContext, phone_config: PhoneConfigService) -> None:
    @router.get("/phones", summary="Phones with their connection status, and the counts")
    async def phone_list(who: Who, company: CompanyQuery = None,
                         type: Annotated[phones.PhoneKind | None, Query()] = None) -> PhoneList:
        company_id = who.principal.company_scope(company)
        cards, counts = await phones.list_phones(ctx.db, company_id, settings=ctx.settings)
        if type is not None:
            cards = [c for c in cards if c["kind"] == type]
        return {"companies": await phones.companies(ctx.db, company_id), "counts": counts, "phones": cards}

    @router.get("/phones/{company_id}/{phone_index}", summary="One phone")
    async def phone(who: Who, company_id: CompanyId, phone_index: PhoneIndex) -> phones.PhoneCard:
        who.principal.require_company(company_id, "phone")
        cards, _counts = await phones.list_phones(ctx.db, company_id, phone_index, settings=ctx.settings)
        if not cards:
            raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
        return cards[0]

    @router.get("/phones/{company_id}/{phone_index}/qr.png", summary="The QR code to scan (image/png)",
                response_class=Response)
    async def qr(who: Who, company_id: CompanyId, phone_index: PhoneIndex) -> Response:
        who.principal.require_company(company_id, "phone")
        data_url = await phones.qr_data_url(ctx.db, company_id, phone_index)
        try:
            png = png_from_data_url(data_url)
        except ValueError as exc:
            raise ServiceUnavailable("the stored QR code is not a PNG image") from exc
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def wwebjs_phone(who: Caller, company_id: str, phone_index: int) -> SessionKey:
        """The session of a wwebjs phone of the caller's (404 for another's phone, 409 for another kind)."""
        who.principal.require_company(company_id, "phone")
        phone = await phones.one_phone(ctx.db, company_id, phone_index)
        if not phone.is_wwebjs:
            raise Conflict(f"phone {phone_index} uses {phone.connection_type!r}: sessions exist only for wwebjs")
        return SessionKey(company_id, phone_index)

    async def command(who: Caller, key: SessionKey, action: CommandAction, args: JsonObject,
                      wait: float) -> SessionCommandState:
        return _command_answer(await run_session_command(ctx, key, action, args,
                                                         requested_by=f"dashboard:{who.label}", wait=wait))

    @router.post("/phones/{company_id}/{phone_index}/session/{action}",
                 summary="start | stop | restart | logout a WhatsApp Web session (through the session commands)")
    async def session_action(who: Who, company_id: CompanyId, phone_index: PhoneIndex, action: SessionAction,
                             body: Confirmed | None = None) -> SessionCommandState:
        if action in ("stop", "logout"):
            require_confirmed(body)
        key = await wwebjs_phone(who, company_id, phone_index)
        return await command(who, key, action, {}, COMMAND_WAIT_S)

    @router.post("/phones/{company_id}/{phone_index}/pairing-code",
                 summary="Link by phone number: request a pairing code")
    async def pairing_code(who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                           body: PairingCodeRequest) -> SessionCommandState:
        key = await wwebjs_phone(who, company_id, phone_index)
        return await command(who, key, "pairing_code", {"phoneNumber": normalise_phone(body.phoneNumber)},
                             PAIRING_WAIT_S)

    @router.post("/phones/{company_id}/{phone_index}/verify",
                 summary="Ask the Cloud API for the number's status and quality")
    async def verify(who: Who, company_id: CompanyId, phone_index: PhoneIndex) -> Verified:
        who.principal.require_company(company_id, "phone")
        return {"verification": await phones.verify_cloud_phone(ctx, company_id, phone_index)}

    @router.post("/phones/{company_id}/{phone_index}/resume",
                 summary="End a Cloud API phone's sending pause (after 368 / 131031) and release its held messages")
    async def resume_phone(who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                           body: Confirmed | None = None) -> phones.Resumed:
        require_confirmed(body)
        who.principal.require_company(company_id, "phone")
        return await phones.resume_cloud_phone(ctx, company_id, phone_index, by=who.label)

    @router.post("/phones/{company_id}/{phone_index}/remove", summary="Remove a phone's configuration")
    async def remove_phone(who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                           body: Confirmed | None = None) -> PhoneRemoved:
        require_confirmed(body)
        who.principal.require_company(company_id, "phone")
        await phone_config.remove(company_id, phone_index)
        await ctx.events.record("dashboard.phone.remove", {
            "companyId": company_id, "phoneIndex": phone_index, "by": who.label}, "warning")
        return {"removed": True, "companyId": company_id, "phoneIndex": phone_index}


def _message_routes(router: APIRouter, ctx: ProcessContext) -> None:
    @router.get("/messages", summary="Find messages by id, provider id, chat or text (or the latest); filters, pages")
    async def message_search(who: Who, company: CompanyQuery = None,
                             q: Annotated[str | None, Query(max_length=256)] = None,
                             status: Annotated[str | None, Query(pattern=r"^[a-z]{1,16}$")] = None,
                             direction: Annotated[Literal["inbound", "outbound"] | None, Query()] = None,
                             engine: Annotated[str | None, Query(
                                 pattern=r"^[a-z0-9_]{1,32}$", description="provider: wwebjs, meta, 360dialog")] = None,
                             phone: Annotated[int | None, Query(ge=0, le=1000)] = None,
                             since: Annotated[datetime | None, Query(description="created at or after")] = None,
                             until: Annotated[datetime | None, Query(description="created before")] = None,
                             before: Annotated[int | None, Query(ge=1, description="the previous page's next")] = None,
                             ) -> messages.SearchResult:
        filters = messages.MessageFilter(status, direction, engine, phone, since, until, before)
        return await messages.search(ctx, who.principal.company_scope(company), q, filters)

    @router.get("/messages/{company_id}/{message_id}", summary="A message: timeline, error, webhook deliveries")
    async def message_detail(who: Who, company_id: CompanyId,
                             message_id: Annotated[str, Path(min_length=1, max_length=256)],
                             ) -> messages.DashboardMessage:
        who.principal.require_company(company_id, "message")
        return await messages.detail(ctx, company_id, message_id)
