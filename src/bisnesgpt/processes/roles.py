"""Which components make up each role. ``legacy`` is every role in one process."""

from __future__ import annotations

from bisnesgpt.config import Role, Settings
from bisnesgpt.processes.component import Component


def api_components(settings: Settings) -> list[Component]:
    from bisnesgpt.api.component import ApiComponent
    from bisnesgpt.health.all_component import HealthAllComponent
    from bisnesgpt.health.maintenance import MaintenanceComponent

    return [
        ApiComponent(settings),
        HealthAllComponent(),
        MaintenanceComponent(settings),
    ]


def wwebjs_components(settings: Settings) -> list[Component]:
    return []


def meta_components(settings: Settings) -> list[Component]:
    return []


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
