"""``GET /api/v1/usage``: a period's billing data and message counts (company scope; operators: all)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from bisnesgpt.api.auth import CurrentPrincipal
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN, problem_responses
from bisnesgpt.api.schemas.usage import USAGE_EXAMPLE, UsageView
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.usage import usage
from bisnesgpt.tenancy.store import get_company

# Without ``from``, a report covers the last 30 days.
DEFAULT_PERIOD = timedelta(days=30)


def period(start: datetime | None, end: datetime | None, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[``start``, ``end``): ``end`` defaults to now, ``start`` to 30 days before it; naive times are UTC."""
    stop = _utc(end) if end is not None else (now or datetime.now(UTC))
    begin = _utc(start) if start is not None else stop - DEFAULT_PERIOD
    if begin >= stop:
        raise ValidationFailed(
            f"'from' ({begin.isoformat()}) must be before 'to' ({stop.isoformat()})",
            errors=[{"field": "from", "message": "must be before 'to'", "type": "value_error"}])
    return begin, stop


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def build(db: Database) -> APIRouter:
    """The usage route."""
    router = APIRouter(tags=["usage"])

    @router.get(
        "/api/v1/usage", response_model=UsageView, response_model_by_alias=True,
        summary="Usage: Cloud API conversations and billable messages, message counts per status",
        responses={200: {"content": {"application/json": {"example": USAGE_EXAMPLE}}},
                   **problem_responses(401, 403, 404, 422, 503)},
    )
    async def get_usage(
        principal: CurrentPrincipal,
        start: Annotated[datetime | None, Query(alias="from", description="Start (ISO 8601; default 30 days "
                                                "before `to`), inclusive", examples=["2025-01-01"])] = None,
        end: Annotated[datetime | None, Query(alias="to", description="End (ISO 8601; default now), exclusive",
                                              examples=["2025-02-01"])] = None,
        companyId: Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN, description="The company; an operator "
                                               "key without it gets every company", examples=["acme"])] = None,
    ) -> UsageView:
        company_id = principal.company_scope(companyId)
        begin, stop = period(start, end)
        async with db.connection() as conn:
            if company_id is not None:
                await get_company(conn, company_id)  # an unknown company is a 404, not an empty report
            report = await usage(conn, company_id, begin, stop)
        return UsageView.of(report)

    return router
