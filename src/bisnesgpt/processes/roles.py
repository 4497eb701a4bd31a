"""Which components make up each role, in start order. ``legacy`` is every role in one process."""

from __future__ import annotations

from bisnesgpt.config import Role
from bisnesgpt.processes.component import Component
from bisnesgpt.processes.context import ProcessContext


def api_components(ctx: ProcessContext) -> list[Component]:
    """The api role: HTTP API, session and webhook APIs, dashboard, and the api's upkeep jobs."""
    from bisnesgpt.api.component import (
        ApiComponent,
        ConversationsApiComponent,
        EventStreamComponent,
        GroupsApiComponent,
        MediaApiComponent,
        PipelineComponent,
        SessionsApiComponent,
        WebhooksApiComponent,
    )
    from bisnesgpt.dashboard.component import DashboardComponent
    from bisnesgpt.health.component import HealthAllComponent, MaintenanceComponent
    from bisnesgpt.messaging.component import OutboxReconcilerComponent
    from bisnesgpt.webhooks.component import WebhookDeliveryComponent

    return [
        ApiComponent(ctx),
        HealthAllComponent(ctx),
        MaintenanceComponent(ctx),
        PipelineComponent(ctx),
        OutboxReconcilerComponent(ctx),
        SessionsApiComponent(ctx),
        WebhooksApiComponent(ctx),
        MediaApiComponent(ctx),
        EventStreamComponent(ctx),
        ConversationsApiComponent(ctx),
        GroupsApiComponent(ctx),
        WebhookDeliveryComponent(ctx),
        DashboardComponent(ctx),
    ]


def wwebjs_components(ctx: ProcessContext) -> list[Component]:
    """The wwebjs role: the sessions, then the send worker that uses them."""
    from bisnesgpt.engines.wwebjs.component import wwebjs_components as build

    return build(ctx)


def meta_components(ctx: ProcessContext) -> list[Component]:
    """The meta role: the send worker and the webhook routes with their worker."""
    from bisnesgpt.engines.meta.component import meta_components as build

    return build(ctx)


def build_components(role: Role, ctx: ProcessContext) -> list[Component]:
    """The components of ``role``, built with the process's open context."""
    if role == "api":
        return api_components(ctx)
    if role == "wwebjs":
        return wwebjs_components(ctx)
    if role == "meta":
        return meta_components(ctx)
    # legacy: the rollback target runs everything itself, honouring ENABLE_* like the orchestrator.
    components = api_components(ctx)
    if ctx.settings.enable_wwebjs:
        components += wwebjs_components(ctx)
    if ctx.settings.enable_meta:
        components += meta_components(ctx)
    return components
