"""GET /health and GET /metrics, served by every process."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bisnesgpt.health import metrics
from bisnesgpt.health.monitor import HealthMonitor


def health_router(monitor: HealthMonitor) -> APIRouter:
    """``/health`` (this process, 200 or 503) and ``/metrics`` (Prometheus), from ``monitor``."""
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="This process's health (200 healthy, 503 otherwise)")
    async def health() -> JSONResponse:
        status, body = await monitor.body()
        return JSONResponse(body, status_code=status)

    @router.get("/metrics", summary="Prometheus metrics of this process", include_in_schema=False)
    async def prometheus(_request: Request) -> Response:
        stats = monitor.ctx.db.stats()
        metrics.DB_POOL.labels("size").set(stats["size"])
        metrics.DB_POOL.labels("idle").set(stats["idle"])
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return router
