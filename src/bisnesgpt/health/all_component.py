"""``GET /health/all`` on the api role: every process, each instance, overall 200 or 503."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.health.overview import fetch_overview, mark_disabled_roles
from bisnesgpt.processes.component import Component
from bisnesgpt.processes.context import ProcessContext

log = logging.getLogger(__name__)


class HealthAllComponent(Component):
    """Serves the all-processes view; marks switched-off roles ``disabled`` at start."""

    name = "health-all"

    def __init__(self) -> None:
        self._router = APIRouter(tags=["health"])
        self._router.add_api_route(
            "/health/all", self.health_all, methods=["GET"],
            summary="Every process (each instance) from heartbeats: 200 when all enabled roles are healthy",
        )

    def routers(self) -> Sequence[APIRouter]:
        return (self._router,)

    async def start(self, ctx: ProcessContext) -> None:
        try:
            await mark_disabled_roles(ctx.db, ctx.settings)
        except BisnesgptError as exc:
            log.warning("could not mark disabled roles: %s", exc.detail)

    async def health_all(self, request: Request) -> JSONResponse:
        ctx: ProcessContext = request.app.state.ctx
        try:
            overview = await fetch_overview(ctx.db, ctx.settings, legacy=ctx.role == "legacy")
        except BisnesgptError as exc:
            body = {"status": "unhealthy", "servedBy": ctx.process_name, "timestamp": time.time(),
                    "error": f"cannot read process health: {exc.detail}"}
            return JSONResponse(body, status_code=503)
        body = {**overview.as_dict(), "servedBy": ctx.process_name, "timestamp": time.time()}
        return JSONResponse(body, status_code=200 if overview.healthy else 503)
