"""The meta role's components: the send worker, and the webhook routes with their worker."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from bisnesgpt.config import Settings
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.engine import MetaEngine, ProcessRateLimiter
from bisnesgpt.engines.meta.pacing import Pacer
from bisnesgpt.engines.meta.phones import PhoneCache
from bisnesgpt.engines.meta.webhook_processor import WebhookProcessor
from bisnesgpt.engines.meta.webhook_routes import webhook_router
from bisnesgpt.health import metrics
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.queues import META, WEBHOOK_EVENTS
from bisnesgpt.messaging.worker import QueueWorker, SendJobProcessor
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext


class MetaSendComponent(Component):
    """Consumes ``meta-messages``: paces and sends through the Cloud API (or 360dialog)."""

    name = "meta-send"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: CloudApiClient | None = None
        self.worker: QueueWorker | None = None
        self._processed = 0

    async def start(self, ctx: ProcessContext) -> None:
        settings = ctx.settings
        self.client = CloudApiClient(timeout=settings.meta_http_timeout,
                                     connect_timeout=settings.meta_http_connect_timeout,
                                     max_connections=settings.meta_http_max_connections)
        await self.client.open()
        engine = MetaEngine(settings, ctx.db, self.client, Pacer(ctx.redis), PhoneCache(ctx.db), ctx.events,
                            secret_box(settings), ProcessRateLimiter(settings.meta_max_messages_per_second))
        processor = SendJobProcessor(ctx.db, engine, META, process_name=ctx.process_name,
                                     on_outcome=self._on_outcome)
        # Held jobs (waiting for a near pacing slot) do no work: they get slots of their own.
        concurrency = settings.meta_send_concurrency + settings.meta_pacing_hold_jobs
        self.worker = QueueWorker(ctx.redis_url, META, processor, concurrency=concurrency,
                                  name=f"{ctx.process_name}:{META.name}")
        await self.worker.start()

    def _on_outcome(self, outcome: str, seconds: float) -> None:
        if outcome in ("sent", "failed"):  # finished messages, not deferrals or retries
            self._processed += 1
        metrics.MESSAGES_PROCESSED.labels(META.name, outcome).inc()
        metrics.SEND_SECONDS.labels(META.name).observe(seconds)

    async def drain(self, timeout: float) -> None:
        if self.worker is not None:
            await self.worker.close(timeout)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.close(1.0)
        if self.client is not None:
            await self.client.close()

    async def checks(self) -> dict[str, Check]:
        worker = self.worker
        alive = worker is not None and worker.alive
        return {"metaSendWorker": Check(alive, "consuming meta-messages" if alive else "not running",
                                        {"activeJobs": worker.active_jobs if worker else 0,
                                         "lastError": worker.last_error if worker else None})}

    def messages_processed(self) -> int:
        return self._processed

    def queue_workers(self) -> Sequence[QueueWorker]:
        return (self.worker,) if self.worker is not None else ()


class MetaWebhookComponent(Component):
    """Serves the Meta/360dialog webhook routes and consumes ``webhook-events``."""

    name = "meta-webhooks"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._router = webhook_router(settings)
        self.worker: QueueWorker | None = None
        self.processor: WebhookProcessor | None = None

    def routers(self) -> Sequence[APIRouter]:
        return (self._router,)

    async def start(self, ctx: ProcessContext) -> None:
        self.processor = WebhookProcessor(ctx.db, ctx.queues, ctx.events, ctx.settings)
        self.worker = QueueWorker(ctx.redis_url, WEBHOOK_EVENTS, self.processor,
                                  name=f"{ctx.process_name}:{WEBHOOK_EVENTS.name}")
        await self.worker.start()
        if ctx.settings.meta_app_secret is None:
            await ctx.events.record("meta.webhook.unsigned", {
                "detail": "META_APP_SECRET is not set: every Meta webhook POST will be rejected (401)"}, "warning")

    async def drain(self, timeout: float) -> None:
        if self.worker is not None:
            await self.worker.close(timeout)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.close(1.0)

    async def checks(self) -> dict[str, Check]:
        worker = self.worker
        alive = worker is not None and worker.alive
        return {"metaWebhookWorker": Check(alive, "consuming webhook-events" if alive else "not running", {
            "activeJobs": worker.active_jobs if worker else 0,
            "appSecretConfigured": self.settings.meta_app_secret is not None,
            "verifyTokenConfigured": self.settings.meta_webhook_verify_token is not None,
        })}

    def messages_processed(self) -> int:
        return self.processor.processed if self.processor else 0

    def queue_workers(self) -> Sequence[QueueWorker]:
        return (self.worker,) if self.worker is not None else ()


def meta_role_components(settings: Settings) -> list[Component]:
    return [MetaSendComponent(settings), MetaWebhookComponent(settings)]
