"""A BullMQ consumer for one queue, with bullmq's known pitfalls handled.

``QueueWorker`` wraps ``infra.bullmq_worker.HandBackWorker``: no socket timeout on its
connections (pitfall 1: redis>=8's socket timeout against the drain delay), the Redis
version probed at start so delays are not rounded to whole seconds (pitfall 2), no
bullmq limiter (pitfall 3: its wait; the engines pace per phone themselves), short
lock/stalled intervals so a killed worker's job is back within 10 s, fast reconnects after
a Redis restart.

Outages never cost a job an attempt: a job that meets PostgreSQL or Redis unavailable is
delayed by ``OUTAGE_RETRY_MS`` (or, with Redis itself gone, left to the stalled checker)
without BullMQ counting it, so an outage never turns into ``failed`` messages. On a
graceful stop, jobs fetched but not yet started (and jobs cut short at the deadline) are
handed back to ``wait`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bullmq.custom_errors import DelayedError
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bisnesgpt.core.errors import DatabaseUnavailable, QueueUnavailable
from bisnesgpt.infra.bullmq_worker import HandBackWorker, promote
from bisnesgpt.infra.redis import connection_kwargs, fast_retry
from bisnesgpt.messaging.queues import DEFAULT_PREFIX, QueueSpec

if TYPE_CHECKING:
    from bullmq import Job

log = logging.getLogger(__name__)

# A killed worker's job: lock expires <= LOCK_DURATION_MS after its last renewal; the stalled
# checker (run at start and every STALLED_INTERVAL_MS) moves it back within two checks.
LOCK_DURATION_MS = 5_000
STALLED_INTERVAL_MS = 2_000
MAX_STALLED_COUNT = 10
# A job that met an outage (PostgreSQL or Redis unavailable) runs again after this, attempt-free.
OUTAGE_RETRY_MS = 1_000
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable, QueueUnavailable, RedisConnectionError, RedisTimeoutError, BusyLoadingError)

# Called with each job and its lock token; returns the completed job's value, raises to delay/fail it.
Processor = Callable[["Job", str], Awaitable[object]]


class QueueWorker:
    """A ``bullmq.Worker`` for one queue, started after the process starts."""

    def __init__(
        self,
        redis_url: str,
        spec: QueueSpec,
        processor: Processor,
        *,
        concurrency: int | None = None,
        prefix: str = DEFAULT_PREFIX,
        name: str | None = None,
        lock_duration_ms: int = LOCK_DURATION_MS,
        stalled_interval_ms: int = STALLED_INTERVAL_MS,
    ) -> None:
        self.redis_url = redis_url
        self.spec = spec
        self.processor = processor
        self.concurrency = concurrency or spec.concurrency
        self.prefix = prefix
        self.name = name or spec.name
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms
        self._worker: HandBackWorker | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self._owned_pool: SentinelConnectionPool | None = None

    async def start(self) -> None:
        """Connect, recover a killed predecessor's jobs, and begin consuming."""
        connection = connection_kwargs(self.redis_url)
        # A Sentinel pool is ours, not bullmq's: its clients leave it open when they close.
        pool = connection.get("connection_pool")
        self._owned_pool = pool if isinstance(pool, SentinelConnectionPool) else None
        self._worker = HandBackWorker(
            self.spec.name,
            self._process,
            {
                "connection": connection,
                "prefix": self.prefix,
                "concurrency": self.concurrency,
                "autorun": False,
                "lockDuration": self.lock_duration_ms,
                "stalledInterval": self.stalled_interval_ms,
                "maxStalledCount": MAX_STALLED_COUNT,
                "removeOnComplete": True,
                "removeOnFail": False,
                "name": self.name,
            },
        )
        self._worker.on("error", self._on_error)
        backend = self._worker.backend
        for connection in (backend.connection, backend.blocking_connection):
            connection.conn.set_retry(fast_retry())
        # Pitfall 2: without a known Redis version, delays are rounded up to whole seconds.
        await backend.blocking_connection.getRedisVersion()
        await backend.connection.getRedisVersion()
        # Recover a killed predecessor's jobs now rather than one stalled interval from now.
        await self._worker.runStalledJobsCheck()
        self._task = asyncio.create_task(self._worker.run(), name=f"worker:{self.spec.name}")

    async def _process(self, job: Job, token: str) -> object:
        try:
            return await self.processor(job, token)
        except OUTAGE_ERRORS as exc:
            # Not the job's fault: run it again soon without counting an attempt. With Redis
            # gone the move fails too; the job stays active, its lock expires and the stalled
            # checker puts it back once Redis is up (no attempt counted either).
            log.warning("job %s on %s: %s; retrying in %d ms (no attempt used)", job.id, self.spec.name,
                        getattr(exc, "detail", None) or repr(exc), OUTAGE_RETRY_MS)
            try:
                await job.moveToDelayed(int(time.time() * 1000) + OUTAGE_RETRY_MS, token)
            except Exception as move_error:
                log.warning("job %s: could not delay it (%r); the stalled checker will return it", job.id,
                            move_error)
            raise DelayedError(f"dependency unavailable: {exc}") from exc

    def _on_error(self, error: object, *_args: object) -> None:
        self.last_error = str(error)
        # A job caught mid-move (delayed/completed) between two lock renewals is harmless.
        level = logging.DEBUG if "could not renew lock" in str(error).lower() else logging.WARNING
        log.log(level, "worker %s: %s", self.spec.name, error)

    async def promote(self, job_ids: list[str]) -> int:
        """Run these delayed jobs now (see ``messaging.wakeups``)."""
        if self._worker is None or not job_ids:
            return 0
        return await promote(self._worker.backend, job_ids)

    @property
    def alive(self) -> bool:
        """Whether the consumer's run loop is running."""
        return self._task is not None and not self._task.done()

    @property
    def active_jobs(self) -> int:
        """Jobs this worker is running now."""
        return len(self._worker.jobs) if self._worker is not None else 0

    async def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, let in-flight ones finish up to ``timeout``, then force.

        Bounded: bullmq's own ``close()`` waits for every job and ignores cancellation, so
        it is only called once nothing runs any more. Jobs fetched but not started, and
        jobs cut short at the deadline, are handed back to ``wait`` (``HandBackWorker``).
        """
        worker = self._worker
        if worker is None:
            return
        self._worker = None
        began = time.monotonic()
        deadline = began + timeout
        worker.closing = True
        worker.paused = False
        worker.resume_event.set()
        if worker.waiting:
            worker.waiting.cancel()
        while True:
            running = [t for t in (self._task, *worker.processing) if t is not None and not t.done()]
            if not running:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("worker %s: %d job(s) did not finish in %.1fs; handing them back", self.spec.name,
                            len(worker.jobs), timeout)
                worker.forceClosing = True
                for task in running:
                    task.cancel()
                await asyncio.wait(running, timeout=2)
                break
            await asyncio.wait(running, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        drained = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(worker.close(force=worker.forceClosing)), 3)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("worker %s: closing its connections timed out", self.spec.name)
        except Exception as exc:
            log.warning("worker %s: close: %r", self.spec.name, exc)
        with contextlib.suppress(Exception):
            await worker.close_locks()  # idempotent; a no-op unless a forced job never ended
        if self._owned_pool is not None:
            await self._owned_pool.disconnect()
        log.info("worker %s closed in %.2fs (jobs drained in %.2fs%s)", self.spec.name, time.monotonic() - began,
                 drained - began, ", forced" if worker.forceClosing else "")
