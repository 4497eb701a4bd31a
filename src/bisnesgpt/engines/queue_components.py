"""What the engines' queue components share: one queue consumer each, started, drained and stopped with them.

``SendQueueComponent`` is an engine's send side (``meta-send``, ``wwebjs-send``): the worker
helper (``SendJobProcessor``) drives the engine for every job; the component counts the
messages finished here and records the send metrics. The ``/health`` checks are each
component's own (their keys and details differ) and stay with them.
"""

from __future__ import annotations

from collections.abc import Sequence

from bisnesgpt.health import metrics
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import QueueSpec
from bisnesgpt.messaging.send_processor import Engine, OutcomeFence, OutcomeKind, SendJobProcessor
from bisnesgpt.messaging.send_store import PgSendStore
from bisnesgpt.messaging.wakeups import Wakeups
from bisnesgpt.messaging.write_batch import WriteBatcher
from bisnesgpt.processes.component import Component, HealthReporter
from bisnesgpt.processes.context import ProcessContext


class QueueComponent(Component, HealthReporter):
    """A component whose work is consuming one queue with ``worker`` (set by the subclass)."""

    worker: QueueWorker

    async def start(self) -> None:
        """Begin consuming."""
        await self.worker.start()

    async def drain(self, timeout: float) -> None:
        """Stop fetching; let the jobs in flight finish."""
        await self.worker.close(timeout)

    async def stop(self) -> None:
        """Close the worker."""
        await self.worker.close(1.0)

    def queue_workers(self) -> Sequence[QueueWorker]:
        """The queue's consumer."""
        return (self.worker,)


class SendQueueComponent(QueueComponent):
    """Consumes one send queue with ``engine``; ``concurrency`` and ``worker_name`` default to the queue's."""

    def __init__(self, ctx: ProcessContext, spec: QueueSpec, engine: Engine, *, concurrency: int | None = None,
                 worker_name: str | None = None, wakeups: Wakeups | None = None,
                 outcome_fence: OutcomeFence | None = None, batcher: WriteBatcher | None = None) -> None:
        self.spec = spec
        self.processed = 0
        processor = SendJobProcessor(PgSendStore(ctx.db, ctx.queues, batcher=batcher), engine, spec,
                                     process_name=ctx.process_name, on_outcome=self._on_outcome, wakeups=wakeups,
                                     events=ctx.events, outcome_fence=outcome_fence)
        self.worker = QueueWorker(ctx.redis_url, spec, processor, concurrency=concurrency, name=worker_name)

    def _on_outcome(self, outcome: OutcomeKind, seconds: float) -> None:
        if outcome in ("sent", "failed"):  # finished messages, not deferrals or retries
            self.processed += 1
        metrics.MESSAGES_PROCESSED.labels(self.spec.name, outcome).inc()
        metrics.SEND_SECONDS.labels(self.spec.name).observe(seconds)

    def messages_processed(self) -> int:
        """Messages sent or failed for good by this process."""
        return self.processed
