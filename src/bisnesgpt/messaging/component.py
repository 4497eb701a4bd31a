"""The messaging package's component of the api role: the outbox reconciler under its lease."""

from __future__ import annotations

from bisnesgpt.coordination.leased_loop import LeasedLoop
from bisnesgpt.messaging.outbox import OutboxReconciler
from bisnesgpt.processes.component import Check, Component, HealthReporter
from bisnesgpt.processes.context import ProcessContext

LEASE_NAME = "outbox-reconciler"
LEASE_TTL_SECONDS = 10.0


class OutboxReconcilerComponent(Component, HealthReporter):
    """Runs the reconciler (``messaging/outbox.py``) in whichever api instance holds the lease."""

    name = "outbox"

    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx
        self.reconciler = OutboxReconciler(ctx.db, ctx.redis, ctx.queues,
                                           min_age_seconds=ctx.settings.outbox_min_age / 1000)
        self.loop = LeasedLoop(ctx.db, LEASE_NAME, ctx.holder, ctx.settings.outbox_reconcile_interval / 1000,
                               self._pass, ttl=LEASE_TTL_SECONDS)
        self.total_enqueued = 0

    async def _pass(self) -> bool:
        report = await self.reconciler.run_pass()
        moved = report.enqueued + report.requeued_stalled
        if moved:
            self.total_enqueued += moved
            await self.ctx.events.record("outbox_redispatch", {
                "enqueued": report.enqueued, "requeuedStalled": report.requeued_stalled,
                "checked": report.checked}, "warning")
        return report.full_batch  # a full batch: the next one at once

    async def start(self) -> None:
        """Begin taking turns at the lease."""
        self.loop.start()

    async def stop(self) -> None:
        """Stop and release the lease for another instance."""
        await self.loop.stop()

    async def checks(self) -> dict[str, Check]:
        """``outbox``: reconciling or standby, with the last pass and error (never unhealthy)."""
        held = self.loop.held
        return {"outbox": Check(True, "reconciling" if held else "standby (another instance holds the lease)",
                                {"leaseHeld": held, "lastPassAt": self.loop.last_run_at,
                                 "lastError": self.loop.last_error, "redispatched": self.total_enqueued})}
