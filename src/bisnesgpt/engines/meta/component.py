"""The meta role's components: the send worker, the webhook routes with their worker, media downloads."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.engine import MetaEngine, ProcessRateLimiter
from bisnesgpt.engines.meta.media_downloads import MetaMediaDownloader, media_downloads_spec
from bisnesgpt.engines.meta.pacing import Pacer
from bisnesgpt.engines.meta.phones import PhoneCache
from bisnesgpt.engines.meta.uploads import GraphUploads
from bisnesgpt.engines.meta.webhook_processor import WebhookProcessor
from bisnesgpt.engines.meta.webhook_routes import webhook_router
from bisnesgpt.engines.queue_components import QueueComponent, SendQueueComponent
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.media.library import MediaLibrary, build_store
from bisnesgpt.media.signing import MediaUrlSigner
from bisnesgpt.media.store import MediaStore
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import META, WEBHOOK_EVENTS
from bisnesgpt.messaging.write_batch import WriteBatcher
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext


class _GraphAndStoreComponent(QueueComponent):
    """A queue component that needs the Cloud API client and the media store open while it consumes."""

    client: CloudApiClient
    store: MediaStore

    async def start(self) -> None:
        """Open the HTTP client and the media store, then begin consuming."""
        await self.client.open()
        await self.store.open()
        await super().start()

    async def stop(self) -> None:
        """Close the worker (and what it writes through), the media store and the HTTP client."""
        await super().stop()
        await self._close_after_worker()
        await self.store.close()
        await self.client.close()

    async def _close_after_worker(self) -> None:
        """What the component closes once its worker stopped, before the store and the client."""


class MetaSendComponent(_GraphAndStoreComponent, SendQueueComponent):
    """Consumes ``meta-messages``: paces and sends through the Cloud API (or 360dialog)."""

    name = "meta-send"

    def __init__(self, ctx: ProcessContext) -> None:
        settings = ctx.settings
        self.client = CloudApiClient.from_settings(settings)
        self.store = build_store(settings)
        uploads = GraphUploads(MediaLibrary(ctx.db, self.store, settings), self.client)
        engine = MetaEngine(settings, ctx.db, self.client, Pacer(ctx.redis), PhoneCache(ctx.db), ctx.events,
                            secret_box(settings), ProcessRateLimiter(settings.meta_max_messages_per_second),
                            uploads)
        self.batcher = WriteBatcher(ctx.db, max_items=settings.meta_write_batch_max,
                                    max_delay_ms=settings.meta_write_batch_ms)
        # Held jobs (waiting for a near pacing slot) do no work: they get slots of their own.
        super().__init__(ctx, META, engine, concurrency=settings.meta_send_concurrency + settings.meta_pacing_hold_jobs,
                         worker_name=f"{ctx.process_name}:{META.name}", batcher=self.batcher)

    async def _close_after_worker(self) -> None:
        """Commit the worker's last outcomes."""
        await self.batcher.close()

    async def checks(self) -> dict[str, Check]:
        """``metaSendWorker``: the consumer is running."""
        worker = self.worker
        alive = worker.alive
        return {"metaSendWorker": Check(alive, "consuming meta-messages" if alive else "not running",
                                        {"activeJobs": worker.active_jobs, "lastError": worker.last_error})}


class MetaWebhookComponent(QueueComponent):
    """Serves the Meta/360dialog webhook routes and consumes ``webhook-events``."""

    name = "meta-webhooks"

    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx
        self._router = webhook_router(ctx)
        self.processor = WebhookProcessor(ctx.db, ctx.queues, ctx.events, ctx.settings)
        self.worker = QueueWorker(ctx.redis_url, WEBHOOK_EVENTS, self.processor,
                                  name=f"{ctx.process_name}:{WEBHOOK_EVENTS.name}")

    def routers(self) -> Sequence[APIRouter]:
        """The webhook routes (Meta's and 360dialog's)."""
        return (self._router,)

    async def start(self) -> None:
        """Begin consuming ``webhook-events``; warn when webhooks cannot be verified."""
        await super().start()
        if self.ctx.settings.meta_app_secret is None:
            await self.ctx.events.record("meta.webhook.unsigned", {
                "detail": "META_APP_SECRET is not set: every Meta webhook POST will be rejected (401)"}, "warning")

    async def checks(self) -> dict[str, Check]:
        """``metaWebhookWorker``: the consumer is running, and whether webhooks can be verified."""
        settings = self.ctx.settings
        alive = self.worker.alive
        return {"metaWebhookWorker": Check(alive, "consuming webhook-events" if alive else "not running", {
            "activeJobs": self.worker.active_jobs,
            "appSecretConfigured": settings.meta_app_secret is not None,
            "verifyTokenConfigured": settings.meta_webhook_verify_token is not None,
        })}

    def messages_processed(self) -> int:
        """Webhook events this process handled."""
        return self.processor.processed


class MetaMediaDownloadComponent(_GraphAndStoreComponent):
    """Consumes ``media-downloads``: fetches inbound Cloud API media into the media store."""

    name = "meta-media"

    def __init__(self, ctx: ProcessContext) -> None:
        settings = ctx.settings
        self.client = CloudApiClient.from_settings(settings)
        self.store = build_store(settings)
        self.processor = MetaMediaDownloader(ctx.db, self.client, MediaLibrary(ctx.db, self.store, settings),
                                             MediaUrlSigner.from_settings(settings), secret_box(settings),
                                             settings, ctx.events)
        spec = media_downloads_spec(settings)
        self.worker = QueueWorker(ctx.redis_url, spec, self.processor, name=f"{ctx.process_name}:{spec.name}")

    async def checks(self) -> dict[str, Check]:
        """``mediaDownloadWorker``: the consumer is running (and which store it writes to)."""
        alive = self.worker.alive
        return {"mediaDownloadWorker": Check(alive, "consuming media-downloads" if alive else "not running", {
            "activeJobs": self.worker.active_jobs, "store": self.store.name})}

    def messages_processed(self) -> int:
        """Downloads this process ended (stored or failed)."""
        return self.processor.processed


def meta_components(ctx: ProcessContext) -> list[Component]:
    """The meta role's components, in start order."""
    return [MetaSendComponent(ctx), MetaWebhookComponent(ctx), MetaMediaDownloadComponent(ctx)]
