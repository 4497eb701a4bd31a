"""The health package's components of the api role: ``/health/all`` and the maintenance loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from bisnesgpt.coordination.leased_loop import LeasedLoop
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.health.maintenance import LEASE_NAME, Maintenance
from bisnesgpt.health.overview import fetch_overview, mark_disabled_roles
from bisnesgpt.media.library import MediaLibrary, build_store
from bisnesgpt.processes.component import Component
from bisnesgpt.processes.context import ProcessContext

log = logging.getLogger(__name__)


class HealthAllComponent(Component):
    """Serves the all-processes view; marks switched-off roles ``disabled`` at start."""

    name = "health-all"

    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx
        self._router = APIRouter(tags=["health"])
        self._router.add_api_route(
            "/health/all", self.health_all, methods=["GET"],
            summary="Every process (each instance) from heartbeats: 200 when all enabled roles are healthy",
        )

    def routers(self) -> Sequence[APIRouter]:
        """``GET /health/all``."""
        return (self._router,)

    async def start(self) -> None:
        """Mark the roles switched off by ``ENABLE_*`` as ``disabled`` (best effort)."""
        try:
            await mark_disabled_roles(self.ctx.db, self.ctx.settings)
        except BisnesgptError as exc:
            log.warning("could not mark disabled roles: %s", exc.detail)

    async def health_all(self) -> JSONResponse:
        """Every process from its heartbeat row: 200 when every enabled role is healthy, else 503."""
        ctx = self.ctx
        try:
            overview = await fetch_overview(ctx.db, ctx.settings, legacy=ctx.role == "legacy")
        except BisnesgptError as exc:
            body = {"status": "unhealthy", "servedBy": ctx.process_name, "timestamp": time.time(),
                    "error": f"cannot read process health: {exc.detail}"}
            return JSONResponse(body, status_code=503)
        payload = {**overview.as_dict(), "servedBy": ctx.process_name, "timestamp": time.time()}
        return JSONResponse(payload, status_code=200 if overview.healthy else 503)


class MaintenanceComponent(Component):
    """Runs the clean-up (``health/maintenance.py``) in whichever api process holds the lease."""

    name = "maintenance"

    def __init__(self, ctx: ProcessContext) -> None:
        interval = ctx.settings.cleanup_interval / 1000
        self.store = build_store(ctx.settings)
        self.maintenance = Maintenance(ctx.db, ctx.events, interval=interval, holder=ctx.holder,
                                       media=MediaLibrary(ctx.db, self.store, ctx.settings))
        # Turn often enough that a live holder never loses the lease; a dead one's expires
        # within three turns.
        tick = min(interval, 30.0)
        self.loop = LeasedLoop(ctx.db, LEASE_NAME, ctx.holder, tick, self._turn, ttl=max(3 * tick, 1.0))

    @property
    def runs(self) -> int:
        """Clean-up passes this process made."""
        return self.maintenance.runs

    async def _turn(self) -> None:
        await self.maintenance.run_if_due()

    async def start(self) -> None:
        """Begin taking turns at the lease."""
        await self.store.open()
        self.loop.start()

    async def stop(self) -> None:
        """Stop and release the lease for another process."""
        await self.loop.stop()
        await self.store.close()
