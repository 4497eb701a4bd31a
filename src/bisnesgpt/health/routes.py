"""GET /health, /health/ready, /health/live and /metrics, served by every process.

``/health`` is the full report (200 healthy or degraded, 503 otherwise); ``/health/ready``
says whether the process can accept work now (load balancers, Kubernetes readiness: the
database answers, it is not starting or draining); ``/health/live`` only that it answers
(Kubernetes liveness: restart it when this times out).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bisnesgpt.health import metrics
from bisnesgpt.health.monitor import HealthMonitor


def health_router(monitor: HealthMonitor) -> APIRouter:
    """``/health`` (this process, 200 or 503), its readiness and liveness, and ``/metrics`` (Prometheus)."""
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="This process's health (200 healthy, 503 otherwise)")
    async def health() -> JSONResponse:
        status, body = await monitor.body()
        return JSONResponse(body, status_code=status)

    @router.get("/health/ready", summary="Can this process accept work now (200) or not (503)")
    async def ready() -> JSONResponse:
        status, body = await monitor.readiness()
        return JSONResponse(body, status_code=status)

    @router.get("/health/live", summary="This process answers (200 while its event loop runs)")
    async def live() -> JSONResponse:
        return JSONResponse(monitor.liveness())

    @router.get("/metrics", summary="Prometheus metrics of this process", include_in_schema=False)
    async def prometheus(_request: Request) -> Response:
        stats = monitor.ctx.db.stats()
        metrics.DB_POOL.labels("size").set(stats["size"])
        metrics.DB_POOL.labels("idle").set(stats["idle"])
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return router
