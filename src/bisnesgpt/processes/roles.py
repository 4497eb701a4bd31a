"""Which components make up each role. ``legacy`` is every role in one process."""

from __future__ import annotations

from bisnesgpt.config import Role, Settings
from bisnesgpt.processes.component import Component


def api_components(settings: Settings) -> list[Component]:
    from bisnesgpt.api.component import ApiComponent
    from bisnesgpt.api.pipeline import PipelineComponent
    from bisnesgpt.api.sessions import SessionApiComponent
    from bisnesgpt.api.webhooks import WebhooksApiComponent
    from bisnesgpt.dashboard.component import DashboardComponent
    from bisnesgpt.health.all_component import HealthAllComponent
    from bisnesgpt.health.maintenance import MaintenanceComponent
    from bisnesgpt.messaging.outbox import OutboxReconcilerComponent
    from bisnesgpt.webhooks.component import WebhookDeliveryComponent

    return [
        ApiComponent(settings),
        HealthAllComponent(),  # GET /health/all (issue 4)
        MaintenanceComponent(settings),  # cleanup functions on a schedule, one process at a time (issue 4)
        PipelineComponent(settings),  # send/read/phone-config routes, router (issue 3)
        OutboxReconcilerComponent(settings),  # re-enqueues stored-but-unqueued messages (issue 3)
        SessionApiComponent(settings),  # WhatsApp-Web session API via DB + pub/sub (issue 6)
        WebhooksApiComponent(settings),  # /api/v1/webhooks (issue 7)
        WebhookDeliveryComponent(settings),  # tenant webhook delivery worker (issue 7)
        DashboardComponent(settings),  # /dashboard, its live stream and metrics rollup; /docs offline (issue 8)
    ]


def wwebjs_components(settings: Settings) -> list[Component]:
    from bisnesgpt.engines.wwebjs.components import wwebjs_engine_components

    return [*wwebjs_engine_components(settings)]


def meta_components(settings: Settings) -> list[Component]:
    from bisnesgpt.engines.meta.component import meta_role_components

    return meta_role_components(settings)


def build_components(role: Role, settings: Settings) -> list[Component]:
    if role == "api":
        return api_components(settings)
    if role == "wwebjs":
        return wwebjs_components(settings)
    if role == "meta":
        return meta_components(settings)
    # legacy: the rollback target runs everything itself, honouring ENABLE_* like the orchestrator.
    components = api_components(settings)
    if settings.enable_wwebjs:
        components += wwebjs_components(settings)
    if settings.enable_meta:
        components += meta_components(settings)
    return components
