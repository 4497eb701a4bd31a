"""The delivery worker as a process component (registered in the ``api`` role, hence legacy)."""

from __future__ import annotations

import logging

from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.processes.component import Check, Component, HealthReporter
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.webhooks.worker import DeliveryWorker

log = logging.getLogger(__name__)


class WebhookDeliveryComponent(Component, HealthReporter):
    """Delivers tenant webhook events (unless ``WEBHOOK_DELIVERY_ENABLED=false`` here)."""

    name = "webhook-delivery"

    def __init__(self, ctx: ProcessContext) -> None:
        self.worker: DeliveryWorker | None = None
        if ctx.settings.webhook_delivery_enabled:
            self.worker = DeliveryWorker(
                db=ctx.db, database_url=ctx.database_url, box=secret_box(ctx.settings), settings=ctx.settings,
                holder=ctx.process_name, lease_holder=ctx.holder, events=ctx.events,
            )

    async def start(self) -> None:
        """Start delivering (or say why not)."""
        if self.worker is None:
            log.info("webhook delivery is off in this process (WEBHOOK_DELIVERY_ENABLED=false)")
            return
        await self.worker.start()

    async def drain(self, timeout: float) -> None:
        """Stop claiming; let attempts in flight finish."""
        if self.worker is not None:
            await self.worker.drain(timeout)

    async def stop(self) -> None:
        """Release unfinished claims and close connections."""
        if self.worker is not None:
            await self.worker.stop()

    async def checks(self) -> dict[str, Check]:
        """``webhookDelivery``: the delivery loop is alive and turning."""
        if self.worker is None:
            return {}
        return {"webhookDelivery": self.worker.check()}
