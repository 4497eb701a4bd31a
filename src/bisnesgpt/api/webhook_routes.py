"""``/api/v1/webhooks``: tenant webhook endpoints, their delivery log, retry and replay.

A company key sees only its company's endpoints (another company's answer 404); an
operator key sees all and names the company when creating one (``company_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from bisnesgpt.api.auth import CurrentPrincipal, Principal
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.webhooks.endpoints import EndpointRecord
from bisnesgpt.webhooks.service import (
    CreatedEndpoint,
    WebhookService,
    delivery_view,
    endpoint_view,
)

SECRET_NOTICE = "store this secret now: it is shown only once (rotate it if lost)"  # noqa: S105 - not a secret
# An endpoint or a delivery as ``bisnesgpt.webhooks.service`` shows it (the CLI's --json too).
WebhookView = Mapping[str, object]


class EndpointCreate(BaseModel):
    """Body of a new endpoint; ``company_id`` only from an operator (a company key names its own)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) URL that receives the events")
    events: list[str] | None = Field(None, description="event types to receive; omitted or empty = all")
    enabled: bool = True
    headers: dict[str, str] | None = Field(None, description="custom headers sent with every delivery")
    description: str = Field("", max_length=500)
    include_raw: bool = Field(False, description="add the provider's original payload as data.raw")
    company_id: str | None = Field(None, description="operators only: the company the endpoint belongs to")


class EndpointUpdate(BaseModel):
    """Body of a change: only the fields given change (``headers`` replaces them all)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    events: list[str] | None = None
    enabled: bool | None = None
    headers: dict[str, str] | None = Field(None, description="replaces all custom headers ({} clears them)")
    description: str | None = Field(None, max_length=500)
    include_raw: bool | None = None


class RotateSecret(BaseModel):
    """Body of a secret rotation (optional): how long the previous secret stays valid."""

    model_config = ConfigDict(extra="forbid")

    overlap_seconds: float | None = Field(
        None, description="how long the previous secret keeps signing too (default WEBHOOK_SECRET_ROTATION_"
                          "OVERLAP_SECONDS; 0 = stop at once)")


class EndpointList(TypedDict):
    """The endpoints the caller may see."""

    data: list[WebhookView]


class DeliveryPage(TypedDict):
    """A page of an endpoint's delivery log; ``next_before`` asks for the next one."""

    data: list[WebhookView]
    next_before: int | None


class RetriedDead(TypedDict):
    """How many dead-lettered deliveries were queued again."""

    retried: int


class ReplayNext(TypedDict):
    """The query of the next replay page."""

    since: str
    after_event_id: str | None


class ReplayAnswer(TypedDict):
    """How many events were queued again, and where the next page starts."""

    replayed: int
    has_more: bool
    next: ReplayNext | None


def _scope(principal: Principal) -> str | None:
    return None if principal.is_admin else principal.company_id


class WebhookRoutes:
    """``/api/v1/webhooks`` over a ``WebhookService``."""

    def __init__(self, service: WebhookService) -> None:
        self.service = service
        self.router = self._build_router()

    def _view(self, record: EndpointRecord) -> dict[str, object]:
        return {**endpoint_view(record, self.service.header_names(record))}

    def _created(self, created: CreatedEndpoint) -> dict[str, object]:
        """An endpoint with its new secret: the one answer that shows it."""
        return {**self._view(created.endpoint), "secret": created.secret, "secret_notice": SECRET_NOTICE}

    def _build_router(self) -> APIRouter:
        router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

        @router.post("", status_code=201, summary="Create a webhook endpoint (the signing secret is shown once)")
        async def create_endpoint(body: EndpointCreate, principal: CurrentPrincipal) -> JSONResponse:
            if principal.is_admin:
                if not body.company_id:
                    raise ValidationFailed("company_id is required with an operator key", errors=[
                        {"field": "company_id", "message": "required with an operator key", "type": "missing"}])
                company_id = body.company_id
            else:
                assert principal.company_id is not None
                if body.company_id is not None:
                    principal.require_company(body.company_id)
                company_id = principal.company_id
            created = await self.service.create(
                company_id, url=body.url, events=body.events, enabled=body.enabled, headers=body.headers,
                description=body.description, include_raw=body.include_raw,
            )
            return JSONResponse(self._created(created), status_code=201)

        @router.get("", summary="List webhook endpoints")
        async def list_endpoints(
            principal: CurrentPrincipal,
            company_id: Annotated[str | None, Query(description="operators: only this company")] = None,
        ) -> EndpointList:
            scope = _scope(principal)
            if company_id is not None:
                principal.require_company(company_id)
                scope = company_id
            return {"data": [self._view(e) for e in await self.service.list_endpoints(scope)]}

        @router.get("/{endpoint_id}", summary="One webhook endpoint (with its failure notice, if any)")
        async def get_endpoint(endpoint_id: str, principal: CurrentPrincipal) -> WebhookView:
            endpoint = await self.service.get(endpoint_id, _scope(principal))
            return {**self._view(endpoint), "deliveries": await self.service.counts(endpoint.id, _scope(principal))}

        @router.patch("/{endpoint_id}", summary="Change url, events, enabled, headers, description, include_raw")
        async def update_endpoint(endpoint_id: str, body: EndpointUpdate, principal: CurrentPrincipal
                                  ) -> WebhookView:
            given = body.model_fields_set
            record = await self.service.update(
                endpoint_id, _scope(principal), url=body.url, events=body.events, enabled=body.enabled,
                headers=body.headers, headers_given="headers" in given, description=body.description,
                include_raw=body.include_raw,
            )
            return self._view(record)

        @router.delete("/{endpoint_id}", status_code=204, summary="Delete an endpoint and its delivery log")
        async def delete_endpoint(endpoint_id: str, principal: CurrentPrincipal) -> Response:
            await self.service.delete(endpoint_id, _scope(principal))
            return Response(status_code=204)

        @router.post("/{endpoint_id}/rotate-secret",
                     summary="New signing secret (shown once); the old one keeps signing during the overlap")
        async def rotate_secret(endpoint_id: str, principal: CurrentPrincipal,
                                body: RotateSecret | None = None) -> WebhookView:
            overlap = body.overlap_seconds if body is not None else None
            created = await self.service.rotate_secret(endpoint_id, _scope(principal), overlap)
            return self._created(created)

        @router.get("/{endpoint_id}/deliveries", summary="Delivery log, newest first")
        async def list_deliveries(
            endpoint_id: str,
            principal: CurrentPrincipal,
            status: Annotated[str | None, Query(description="pending | retrying | delivered | dead")] = None,
            event_id: Annotated[str | None, Query()] = None,
            before: Annotated[int | None, Query(description="page: deliveries with a smaller id")] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = 50,
        ) -> DeliveryPage:
            rows = await self.service.list_deliveries(endpoint_id, _scope(principal), status=status, before=before,
                                                      event_id=event_id, limit=limit)
            return {"data": [delivery_view(d) for d in rows],
                    "next_before": rows[-1].id if len(rows) == limit else None}

        @router.get("/{endpoint_id}/deliveries/{delivery_id}", summary="One delivery")
        async def get_delivery(endpoint_id: str, delivery_id: int, principal: CurrentPrincipal) -> WebhookView:
            return delivery_view(await self.service.get_delivery(endpoint_id, delivery_id, _scope(principal)))

        @router.post("/{endpoint_id}/deliveries/retry-dead", status_code=202,
                     summary="Attempt every dead-lettered delivery of this endpoint again")
        async def retry_dead(endpoint_id: str, principal: CurrentPrincipal) -> RetriedDead:
            return {"retried": await self.service.retry_dead(endpoint_id, _scope(principal))}

        @router.post("/{endpoint_id}/deliveries/{delivery_id}/retry", status_code=202,
                     summary="Attempt one delivery again now (same event id)")
        async def retry_delivery(endpoint_id: str, delivery_id: int, principal: CurrentPrincipal
                                 ) -> WebhookView:
            return delivery_view(await self.service.retry(endpoint_id, delivery_id, _scope(principal)))

        @router.post("/{endpoint_id}/replay", status_code=202,
                     summary="Deliver the company's events since a time to this endpoint again")
        async def replay(
            endpoint_id: str,
            principal: CurrentPrincipal,
            since: Annotated[datetime, Query(description="ISO 8601 time; events created at or after it")],
            until: Annotated[datetime | None, Query(description="ISO 8601 time; events created before it")] = None,
            events: Annotated[list[str] | None, Query(description="only these event types")] = None,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
            after_event_id: Annotated[str | None, Query(description="continue after this event (paging)")] = None,
        ) -> ReplayAnswer:
            result = await self.service.replay(endpoint_id, _scope(principal), since=since, until=until,
                                               events=events, limit=limit, after_event_id=after_event_id)
            has_more = result.replayed == limit and result.last_created_at is not None
            return {
                "replayed": result.replayed,
                "has_more": has_more,
                "next": {"since": result.last_created_at.isoformat(), "after_event_id": result.last_event_id}
                if has_more and result.last_created_at else None,
            }

        return router
