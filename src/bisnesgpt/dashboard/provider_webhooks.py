"""Provider webhooks kept aside, for the Queues page: beside the failed jobs, for operators only.

A Cloud API or 360dialog webhook change that named no configured phone, or several, is kept
in ``meta_webhook_changes`` under no company (routing ``unmatched`` / ``ambiguous``). They
belong to no company, so only operators see them; each says what to do about it, the same
words ``bisnesgpt inbound unrouted`` prints (``unrouted_next_step``), read with the same query.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from typing_extensions import TypedDict

from bisnesgpt.dashboard.auth import Caller, dashboard_operator
from bisnesgpt.engines.meta.phones import Routing, UnroutedChange, unrouted_changes, unrouted_next_step
from bisnesgpt.processes.context import ProcessContext

Operator = Annotated[Caller, Depends(dashboard_operator)]
PREVIEW_CHARS = 2_000  # the value as received, cut for the page (the CLI's --json has all of it)


class Candidate(TypedDict):
    """A phone an ambiguous webhook matched."""

    companyId: str
    phoneIndex: int


class KeptAside(TypedDict):
    """A provider webhook change kept aside, and what to do about it."""

    id: int
    provider: str
    routing: Routing
    field: str
    wabaId: str | None
    phoneNumberId: str | None
    candidates: list[Candidate]
    receivedAt: str
    whatToDo: str
    valuePreview: str


class KeptAsidePage(TypedDict):
    """The newest provider webhook changes kept aside."""

    changes: list[KeptAside]


def _candidates(change: UnroutedChange) -> list[Candidate]:
    found = change.candidates if isinstance(change.candidates, list) else []
    return [{"companyId": str(c["companyId"]), "phoneIndex": int(str(c["phoneIndex"]))}
            for c in found if isinstance(c, dict) and "companyId" in c and "phoneIndex" in c]


def kept_aside_view(change: UnroutedChange) -> KeptAside:
    """The page's view of one change kept aside."""
    value = json.dumps(change.value, sort_keys=True)
    return {"id": change.id, "provider": change.provider, "routing": change.routing, "field": change.field,
            "wabaId": change.waba_id, "phoneNumberId": change.phone_number_id, "candidates": _candidates(change),
            "receivedAt": change.received_at.isoformat(), "whatToDo": unrouted_next_step(change),
            "valuePreview": value if len(value) <= PREVIEW_CHARS else value[:PREVIEW_CHARS] + "…"}


def provider_webhook_routes(router: APIRouter, ctx: ProcessContext) -> None:
    """``GET /dashboard/api/provider-webhooks/unrouted`` on ``router`` (operators only)."""

    @router.get("/provider-webhooks/unrouted", summary="Provider webhooks kept aside: no phone, or several, "
                                                        "matched (operators only), with what to do",
                responses={200: {"content": {"application/json": {"example": {"changes": [{
                    "id": 7, "provider": "meta", "routing": "unmatched", "field": "messages.unrouted",
                    "wabaId": "1029384756", "phoneNumberId": "123123123", "candidates": [],
                    "receivedAt": "2026-12-02T15:40:00+00:00",
                    "whatToDo": "no configured phone has 123123123: add the phone (or correct its "
                                "phone_number_id / 360dialog channel) in the company it belongs to; "
                                "later webhooks then route to it",
                    "valuePreview": "{\"message\": {…}}"}]}}}}})
    async def unrouted(_who: Operator, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> KeptAsidePage:
        async with ctx.db.connection() as conn:
            rows = await unrouted_changes(conn, limit)
        return {"changes": [kept_aside_view(r) for r in rows]}
