"""Messages a provider failed by status webhook, for the Queues page: beside the failed jobs.

A Cloud API / 360dialog send can be accepted (its job completes) and fail later, when the
provider's ``failed`` status arrives (131026 not deliverable, 131049 marketing limit …). No
job is left failed for those, so the failed-jobs list never shows them; this list does, with
the same company / phone / error-code filters. Company users see only their own messages.

The query is bounded by time (the last ``WINDOW_DAYS`` days of ``failed_at``): that window is
what ``idx_messages_failed_at`` reads, so listing and counting stay cheap without an index on
the status history's source, however many messages the system has kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from typing_extensions import TypedDict

from bisnesgpt.dashboard.auth import Caller, dashboard_caller
from bisnesgpt.db.queries import load_queries
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.messaging")
Who = Annotated[Caller, Depends(dashboard_caller)]
WINDOW_DAYS = 7
MAX_START = 10_000  # deeper than this, narrow the filters instead: OFFSET reads every row before


class ProviderFailure(TypedDict):
    """An outbound message that its provider failed by status webhook."""

    messageId: str
    companyId: str
    phoneIndex: int
    provider: str
    chatId: str
    externalId: str | None
    errorCode: str | None
    errorTitle: str | None
    source: str
    sentAt: str | None
    failedAt: str


class ProviderFailuresPage(TypedDict):
    """A page of the messages failed by provider webhook in the window, newest first."""

    windowDays: int
    total: int
    start: int
    messages: list[ProviderFailure]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def provider_failures(ctx: ProcessContext, company: str | None, *, phone: int | None, code: str | None,
                            start: int, limit: int) -> ProviderFailuresPage:
    """A page of the messages failed by provider webhook in the last ``WINDOW_DAYS`` days (company None: all)."""
    window = WINDOW_DAYS * 86_400
    rows = await ctx.db.fetch(SQL.select_failed_by_provider, company, phone, code, window, limit, start)
    if not rows and start:  # past the last page: still say how many there are
        first = await ctx.db.fetch(SQL.select_failed_by_provider, company, phone, code, window, 1, 0)
        total = int(first[0]["total"]) if first else 0
    else:
        total = int(rows[0]["total"]) if rows else 0
    return {"windowDays": WINDOW_DAYS, "total": total, "start": start, "messages": [{
        "messageId": r["message_id"], "companyId": r["company_id"], "phoneIndex": int(r["phone_index"]),
        "provider": r["provider"], "chatId": r["chat_id"], "externalId": r["external_id"],
        "errorCode": r["error_code"], "errorTitle": r["error_title"], "source": r["source"],
        "sentAt": _iso(r["sent_at"]), "failedAt": r["failed_at"].isoformat()} for r in rows]}


def provider_failure_routes(router: APIRouter, ctx: ProcessContext) -> None:
    """``GET /dashboard/api/provider-failures`` on ``router`` (a company user: its own messages only)."""

    @router.get("/provider-failures", summary="Messages a provider failed by status webhook in the last 7 days "
                                              "(newest first, paged; filters: company, phone, error code)",
                responses={200: {"content": {"application/json": {"example": {
                    "windowDays": 7, "total": 1, "start": 0, "messages": [{
                        "messageId": "msg_01HZX", "companyId": "acme", "phoneIndex": 1, "provider": "meta",
                        "chatId": "60123456789@c.us", "externalId": "wamid.HBgLNjAxMjM0NTY3ODkVAgARGBI",
                        "errorCode": "131049", "errorTitle": "This message was not delivered to maintain "
                                                             "healthy ecosystem engagement.",
                        "source": "meta-webhook", "sentAt": "2026-12-02T15:40:00+00:00",
                        "failedAt": "2026-12-02T15:40:02+00:00"}]}}}}})
    async def failures(who: Who,
                       company: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
                       phone: Annotated[int | None, Query(ge=0, le=1000)] = None,
                       code: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_]{1,64}$",
                                                         description="the stored error code, e.g. 131026")] = None,
                       start: Annotated[int, Query(ge=0, le=MAX_START)] = 0,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ProviderFailuresPage:
        return await provider_failures(ctx, who.principal.company_scope(company), phone=phone, code=code,
                                       start=start, limit=limit)
