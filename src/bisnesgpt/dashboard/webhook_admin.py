"""The dashboard's tenant webhook endpoints: list, add (secret shown once), send a test, re-enable, remove.

Editing one, its delivery log, retry, replay and secret rotation: ``webhook_manage``.

Every change goes through ``webhooks.service.WebhookService``, as ``/api/v1/webhooks`` and
``bisnesgpt webhooks …`` do: the destination check (public addresses only unless
``WEBHOOK_ALLOW_PRIVATE_DESTINATIONS``), the per-company limit, event types, and re-enabling
resumes the deliveries that waited. Operators see every company's endpoints; a company's user
its own (another's answers 404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from bisnesgpt.dashboard.auth import Caller, dashboard_caller
from bisnesgpt.dashboard.confirm import Confirmed, require_confirmed
from bisnesgpt.dashboard.webhook_manage import webhook_manage_routes
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.events import EventType
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.webhooks.endpoints import EndpointRecord
from bisnesgpt.webhooks.ping import TestDelivery, send_test
from bisnesgpt.webhooks.service import EndpointView, WebhookService, endpoint_view

Who = Annotated[Caller, Depends(dashboard_caller)]
EndpointId = Annotated[str, Path(min_length=1, max_length=128)]


class WebhookEndpoints(TypedDict):
    """The endpoints the caller may see, with their failure notice if disabled."""

    endpoints: list[EndpointView]


class AddedEndpoint(TypedDict):
    """A new endpoint and its signing secret, shown this once."""

    endpoint: EndpointView
    secret: str


class WebhookRemoved(TypedDict):
    """An endpoint deleted with its delivery log."""

    removed: bool
    id: str


class NewEndpoint(BaseModel):
    """Body of a new endpoint (an operator names the company; a company's user gets its own)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"companyId": "acme", "url": "https://crm.example.com/hooks/whatsapp", "description": "CRM",
         "events": ["message.inbound", "message.status"]}]})
    companyId: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(min_length=1, max_length=2048, description="where events are POSTed (https in production)")
    description: str = Field("", max_length=500)
    events: list[EventType] | None = Field(None, description="only these event types (null or empty: every type)")


def webhook_routes(router: APIRouter, ctx: ProcessContext) -> None:
    """``/dashboard/api/webhooks…`` on ``router``."""
    service = WebhookService(ctx.db, secret_box(ctx.settings), ctx.settings)

    def view(record: EndpointRecord) -> EndpointView:
        return endpoint_view(record, service.header_names(record))

    webhook_manage_routes(router, ctx, service, view)

    @router.get("/webhooks", summary="Tenant webhook endpoints, with their health and failure notice")
    async def endpoint_list(who: Who, company: Annotated[str | None, Query(
            pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None) -> WebhookEndpoints:
        scope = who.principal.company_scope(company)
        return {"endpoints": [view(e) for e in await service.list_endpoints(scope)]}

    @router.post("/webhooks", status_code=201, summary="Add a webhook endpoint (its signing secret is shown once)")
    async def endpoint_create(who: Who, body: NewEndpoint) -> AddedEndpoint:
        company_id = who.principal.company_required(body.companyId)
        created = await service.create(company_id, url=body.url, events=list(body.events or []),
                                       description=body.description)
        await ctx.events.record("dashboard.webhook.create", {"companyId": company_id, "endpointId":
                                                             created.endpoint.id, "by": who.label})
        return {"endpoint": view(created.endpoint), "secret": created.secret}

    @router.post("/webhooks/{endpoint_id}/test",
                 summary="Post a signed webhook.test document to the endpoint now and answer how it went")
    async def endpoint_test(who: Who, endpoint_id: EndpointId) -> TestDelivery:
        result = await send_test(service, endpoint_id, who.principal.company_scope(None))
        await ctx.events.record("dashboard.webhook.test", {"endpointId": endpoint_id, "ok": result["ok"],
                                                           "statusCode": result["statusCode"], "by": who.label})
        return result

    @router.post("/webhooks/{endpoint_id}/enable",
                 summary="Enable a disabled endpoint again (the deliveries that waited resume)")
    async def endpoint_enable(who: Who, endpoint_id: EndpointId) -> EndpointView:
        record = await service.update(endpoint_id, who.principal.company_scope(None), enabled=True)
        await ctx.events.record("dashboard.webhook.enable", {"endpointId": endpoint_id, "by": who.label})
        return view(record)

    @router.post("/webhooks/{endpoint_id}/remove", summary="Remove an endpoint and its delivery log")
    async def endpoint_remove(who: Who, endpoint_id: EndpointId, body: Confirmed | None = None) -> WebhookRemoved:
        require_confirmed(body)
        await service.delete(endpoint_id, who.principal.company_scope(None))
        await ctx.events.record("dashboard.webhook.remove", {"endpointId": endpoint_id, "by": who.label}, "warning")
        return {"removed": True, "id": endpoint_id}
