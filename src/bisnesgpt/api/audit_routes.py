"""``GET /api/v1/audit``: the changes made through the API and the dashboard (company scope; operators: all)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bisnesgpt.api import audit
from bisnesgpt.api.auth import CurrentPrincipal
from bisnesgpt.api.schemas.audit import AUDIT_EXAMPLE, AuditEntryView, AuditPage
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN, problem_responses
from bisnesgpt.db.pool import Database

MAX_PAGE = 500


def build(db: Database) -> APIRouter:
    """The audit route."""
    router = APIRouter(tags=["audit"])

    @router.get(
        "/api/v1/audit", response_model=AuditPage,
        summary="Audit log: who changed what, from where, newest first",
        description="Every POST/PUT/PATCH/DELETE an authenticated caller made through the API or the dashboard "
                    "(sends of messages are their own record: the messages). A company key sees what its keys "
                    "did and what was done to the company; an operator key sees every company.",
        responses={200: {"content": {"application/json": {"example": AUDIT_EXAMPLE}}},
                   **problem_responses(401, 403, 422, 503)},
    )
    async def audit_log(
        principal: CurrentPrincipal,
        companyId: Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN, description="Only what touched this "
                                               "company (operators; a company key sees its own)")] = None,
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="The `next` of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> AuditPage:
        company = principal.company_scope(companyId)
        viewer = None if principal.is_admin else principal.company_id
        found = await audit.entries(db, viewer_company=viewer, company=company, before=before, limit=limit + 1)
        page = found[:limit]
        return AuditPage(entries=[AuditEntryView.of(e, viewer_company=viewer) for e in page],
                         next=page[-1].id if len(found) > limit and page else None)

    return router
