"""The dashboard as a component of the ``api`` role (and so of ``legacy``).

Routes: the pages and sign-in (``pages.py``), the JSON API and live stream
(``api_routes.py``), ``/docs`` with vendored Swagger UI, and the original paths
``/status``, ``/queue``, ``/meta-status`` redirecting to the pages. Background work: the
live hub (``live.py``) and the per-minute metrics rollup (``rollup.py``, one process at a
time under a lease).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from bisnesgpt.coordination.leased_loop import LeasedLoop
from bisnesgpt.dashboard.api_routes import Queues, build_api, overview_snapshot
from bisnesgpt.dashboard.auth import SessionAuth
from bisnesgpt.dashboard.live import LiveHub
from bisnesgpt.dashboard.pages import build_pages
from bisnesgpt.dashboard.queues import QueueAdmin
from bisnesgpt.dashboard.rollup import LEASE_NAME, MetricsRollup
from bisnesgpt.dashboard.trial_send import send_service
from bisnesgpt.engines.meta.claims import CloudApiClaims
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.router import announce_change
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.component import Check, Component, HealthReporter
from bisnesgpt.processes.context import ProcessContext


class DashboardComponent(Component, HealthReporter):
    """The operator console: pages, JSON API, live stream, /docs and the metrics rollup."""

    name = "dashboard"
    serves_docs = True

    def __init__(self, ctx: ProcessContext) -> None:
        SessionAuth.check_settings(ctx.settings)  # fail at start, not at the first sign-in
        self.ctx = ctx
        self.hub = LiveHub(ctx.settings.dashboard_live_interval_ms / 1000, overview=self._overview,
                           queues=self._queues)
        self.hub.listen(ctx.coordinator)
        self.phones = PhoneConfigService(ctx.db, secret_box(ctx.settings), on_change=self._config_changed,
                                         claims=CloudApiClaims(ctx.settings))
        self.queues = QueueAdmin(ctx)
        self.rollup = MetricsRollup(ctx.db, ctx.process_name)
        self.rollup_loop = LeasedLoop(ctx.db, LEASE_NAME, ctx.holder, ctx.settings.dashboard_rollup_interval_ms / 1000,
                                      self._roll_up)
        self.sender = send_service(ctx)
        self._routers = (build_pages(ctx), build_api(ctx, self.hub, self.phones, self.queues, self.sender))

    async def _overview(self) -> dict[str, object]:
        return await overview_snapshot(self.ctx)

    async def _queues(self) -> Queues:
        return {"queues": await self.queues.overview()}

    async def _config_changed(self, company_id: str, phone_index: int, connection_type: str | None) -> None:
        await announce_change(self.ctx.redis, self.ctx.namespace, company_id, phone_index, connection_type,
                              self.ctx.process_name)

    async def _roll_up(self) -> None:
        await self.rollup.run_once()

    def routers(self) -> Sequence[APIRouter]:
        """The pages, ``/dashboard/api/…`` and ``/docs``."""
        return self._routers

    async def start(self) -> None:
        """Begin the live snapshots and the rollup loop."""
        self.hub.start()
        self.rollup_loop.start()

    async def drain(self, timeout: float) -> None:
        """End the live streams (their clients reconnect to another instance)."""
        await self.hub.close()

    async def stop(self) -> None:
        """End the live streams and stop the rollup (releasing its lease)."""
        await self.hub.close()
        await self.rollup_loop.stop()

    async def checks(self) -> dict[str, Check]:
        """Informational: the dashboard never makes the API unhealthy."""
        return {self.name: Check(True, "serving", {"liveWatchers": len(self.hub.watchers),
                                                   "rollupLeaseHeld": self.rollup_loop.held})}
