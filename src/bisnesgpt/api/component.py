"""The ``api`` role's HTTP surface."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bisnesgpt.config import Settings
from bisnesgpt.processes.component import Component


class ApiComponent(Component):
    name = "api"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._router = APIRouter()

        @self._router.get("/api/health", tags=["health"], summary="The API process's health (same as /health)")
        async def api_health(request: Request) -> JSONResponse:
            status, body = await request.app.state.monitor.body()
            return JSONResponse(body, status_code=status)

    def routers(self) -> Sequence[APIRouter]:
        return (self._router,)
