"""The delivery worker as a process component (registered in the ``api`` role, hence legacy)."""

from __future__ import annotations

import logging

from bisnesgpt.config import Settings
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.webhooks.worker import DeliveryWorker

log = logging.getLogger(__name__)


class WebhookDeliveryComponent(Component):
    name = "webhook-delivery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker: DeliveryWorker | None = None

    async def start(self, ctx: ProcessContext) -> None:
        if not ctx.settings.webhook_delivery_enabled:
            log.info("webhook delivery is off in this process (WEBHOOK_DELIVERY_ENABLED=false)")
            return
        self.worker = DeliveryWorker(
            db=ctx.db, database_url=ctx.database_url, box=secret_box(ctx.settings), settings=ctx.settings,
            holder=ctx.process_name, events=ctx.events,
        )
        await self.worker.start()

    async def drain(self, timeout: float) -> None:
        if self.worker is not None:
            await self.worker.drain(timeout)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()

    async def checks(self) -> dict[str, Check]:
        if self.worker is None:
            return {}
        return {"webhookDelivery": self.worker.check()}
