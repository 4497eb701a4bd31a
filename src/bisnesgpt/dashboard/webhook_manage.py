"""The dashboard's management of one tenant webhook endpoint: edit, its delivery log, retry, replay, rotate.

The same ``WebhookService`` calls ``/api/v1/webhooks`` and ``bisnesgpt webhooks …`` make (the
URL check, event types, re-enabling resumes waiting deliveries, a replay's bounds, the secret
rotation's overlap from ``WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS``): the console only words the
answers for the page. A company user acts on its own endpoints only (another's answers 404).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from bisnesgpt.dashboard.auth import Caller, dashboard_caller
from bisnesgpt.dashboard.confirm import Confirmed, require_confirmed
from bisnesgpt.messaging.events import EventType
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.webhooks.deliveries import DeliveryStatus
from bisnesgpt.webhooks.endpoints import EndpointRecord
from bisnesgpt.webhooks.service import MAX_REPLAY_EVENTS, DeliveryView, EndpointView, WebhookService, delivery_view

Who = Annotated[Caller, Depends(dashboard_caller)]
EndpointId = Annotated[str, Path(min_length=1, max_length=128)]
DeliveryId = Annotated[int, Path(ge=1)]


class EditEndpoint(BaseModel):
    """Body of an edit: only the fields given change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://crm.example.com/hooks/v2", "events": ["message.status"], "enabled": True}]})
    url: str | None = Field(None, min_length=1, max_length=2048, description="where events are POSTed")
    events: list[EventType] | None = Field(None, description="only these event types (empty: every type)")
    enabled: bool | None = Field(None, description="false: stop delivering; true: deliveries that waited resume")
    description: str | None = Field(None, max_length=500)


class ReplayRange(Confirmed):
    """Body of a replay: confirmed, and the time range of the company's events to deliver again."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"confirm": True, "since": "2026-12-02T14:00:00Z", "until": "2026-12-02T15:00:00Z"}]})
    since: datetime = Field(description="events created at or after this time")
    until: datetime | None = Field(None, description="events created before this time (none: until now)")
    events: list[EventType] | None = Field(None, description="only these event types")


class DeliveryLog(TypedDict):
    """A page of an endpoint's delivery log, newest first; ``nextBefore`` asks for the next one."""

    deliveries: list[DeliveryView]
    nextBefore: int | None
    counts: dict[DeliveryStatus, int]


class Replayed(TypedDict):
    """How many events were queued again; ``hasMore``: the range held more than one call replays."""

    replayed: int
    hasMore: bool
    continueSince: str | None


class Rotated(TypedDict):
    """The endpoint with its new signing secret, shown this once, and until when the old one signs too."""

    endpoint: EndpointView
    secret: str
    previousSecretValidUntil: str | None


def webhook_manage_routes(router: APIRouter, ctx: ProcessContext, service: WebhookService,
                          view: Callable[[EndpointRecord], EndpointView]) -> None:
    """``/dashboard/api/webhooks/{id}/edit|deliveries|replay|rotate-secret`` on ``router``."""

    async def audit(what: str, endpoint_id: str, who: Caller, **detail: object) -> None:
        await ctx.events.record(f"dashboard.webhook.{what}", {"endpointId": endpoint_id, "by": who.label, **detail})

    @router.post("/webhooks/{endpoint_id}/edit", summary="Change an endpoint's URL, event types, enabled flag "
                                                          "or description (only what is given)")
    async def endpoint_edit(who: Who, endpoint_id: EndpointId, body: EditEndpoint) -> EndpointView:
        record = await service.update(endpoint_id, who.principal.company_scope(None), url=body.url,
                                      events=None if body.events is None else list(body.events),
                                      enabled=body.enabled, description=body.description)
        await audit("edit", endpoint_id, who, fields=sorted(body.model_fields_set))
        return view(record)

    @router.get("/webhooks/{endpoint_id}/deliveries", summary="An endpoint's delivery log, newest first, paged")
    async def endpoint_deliveries(
            who: Who, endpoint_id: EndpointId,
            status: Annotated[DeliveryStatus | None, Query(description="pending | retrying | delivered | dead")] = None,
            before: Annotated[int | None, Query(ge=1, description="the previous page's nextBefore")] = None,
            limit: Annotated[int, Query(ge=1, le=100)] = 20) -> DeliveryLog:
        scope = who.principal.company_scope(None)
        rows = await service.list_deliveries(endpoint_id, scope, status=status, before=before, limit=limit)
        return {"deliveries": [delivery_view(d) for d in rows],
                "nextBefore": rows[-1].id if len(rows) == limit else None,
                "counts": await service.counts(endpoint_id, scope)}

    @router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry",
                 summary="Attempt one delivery (a dead one) again now, same event id")
    async def delivery_retry(who: Who, endpoint_id: EndpointId, delivery_id: DeliveryId) -> DeliveryView:
        record = await service.retry(endpoint_id, delivery_id, who.principal.company_scope(None))
        await audit("retry", endpoint_id, who, deliveryId=delivery_id)
        return delivery_view(record)

    @router.post("/webhooks/{endpoint_id}/replay",
                 summary=f"Deliver the company's events of a time range to this endpoint again "
                         f"(at most {MAX_REPLAY_EVENTS} a call)")
    async def endpoint_replay(who: Who, endpoint_id: EndpointId, body: ReplayRange) -> Replayed:
        require_confirmed(body)
        result = await service.replay(endpoint_id, who.principal.company_scope(None), since=body.since,
                                      until=body.until, events=None if body.events is None else list(body.events))
        more = result.replayed == MAX_REPLAY_EVENTS and result.last_created_at is not None
        await audit("replay", endpoint_id, who, since=body.since.isoformat(), replayed=result.replayed)
        return {"replayed": result.replayed, "hasMore": more,
                "continueSince": result.last_created_at.isoformat() if more and result.last_created_at else None}

    @router.post("/webhooks/{endpoint_id}/rotate-secret",
                 summary="New signing secret (shown once); the old one keeps signing for the configured overlap")
    async def endpoint_rotate(who: Who, endpoint_id: EndpointId, body: Confirmed | None = None) -> Rotated:
        require_confirmed(body)
        created = await service.rotate_secret(endpoint_id, who.principal.company_scope(None))
        await audit("rotate_secret", endpoint_id, who)
        shown = view(created.endpoint)
        return {"endpoint": shown, "secret": created.secret,
                "previousSecretValidUntil": shown["secret_rotation"]["previous_secret_valid_until"]}
