"""The dashboard as a component of the ``api`` role (and so of ``legacy``).

Routes: the pages and sign-in (``pages.py``), the JSON API and live stream
(``api_routes.py``), ``/docs`` with vendored Swagger UI, and the original paths
``/status``, ``/queue``, ``/meta-status`` redirecting to the pages. Background work: the
live hub (``live.py``) and the per-minute metrics rollup (``rollup.py``, one process at a
time under a lease).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from bisnesgpt.config import Settings
from bisnesgpt.dashboard.api_routes import build_api, overview_snapshot
from bisnesgpt.dashboard.auth import SessionAuth
from bisnesgpt.dashboard.live import LiveHub
from bisnesgpt.dashboard.pages import build_pages
from bisnesgpt.dashboard.queues import QueueAdmin
from bisnesgpt.dashboard.rollup import MetricsRollup
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.router import announce_change
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext


class DashboardComponent(Component):
    name = "dashboard"
    serves_docs = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub: LiveHub | None = None
        self.phones: PhoneConfigService | None = None
        self.rollup = MetricsRollup(settings)
        self._routers = (build_pages(), build_api(self._hub, self._phones))

    def routers(self) -> Sequence[APIRouter]:
        return self._routers

    def _hub(self) -> LiveHub:
        if self.hub is None:
            raise RuntimeError("dashboard not started")
        return self.hub

    def _phones(self) -> PhoneConfigService:
        if self.phones is None:
            raise RuntimeError("dashboard not started")
        return self.phones

    async def start(self, ctx: ProcessContext) -> None:
        SessionAuth.check_settings(ctx.settings)  # fail at start, not at the first sign-in

        async def overview() -> dict[str, Any]:
            return await overview_snapshot(ctx)

        async def queues() -> dict[str, Any]:
            return {"queues": await QueueAdmin(ctx).overview()}

        self.hub = LiveHub(self.settings.dashboard_live_interval_ms / 1000, overview=overview, queues=queues)
        self.hub.start(ctx)

        async def config_changed(company_id: str, phone_index: int, connection_type: str | None) -> None:
            await announce_change(ctx.redis, company_id, phone_index, connection_type, ctx.process_name)

        self.phones = PhoneConfigService(ctx.db, secret_box(ctx.settings), on_change=config_changed)
        self.rollup.start(ctx)

    async def drain(self, timeout: float) -> None:
        if self.hub is not None:
            await self.hub.close()

    async def stop(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        await self.rollup.stop()

    async def checks(self) -> dict[str, Check]:
        # Informational: the dashboard never makes the API unhealthy.
        watchers = len(self.hub.watchers) if self.hub is not None else 0
        return {self.name: Check(True, "serving", {"liveWatchers": watchers,
                                                   "rollupLeaseHeld": bool(self.rollup.lease and
                                                                           self.rollup.lease.held)})}
