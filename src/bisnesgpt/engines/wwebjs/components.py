"""The ``wwebjs`` role: the session manager and the ``wwebjs-messages`` worker.

Order matters at shutdown: the runtime drains every component, then stops them in reverse
order, so the worker finishes its in-flight sends while the sessions are still connected,
and the sessions disconnect last (credentials stay; leases are released for a successor).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError

from bisnesgpt.config import Settings
from bisnesgpt.engines.wwebjs import metrics as wwebjs_metrics
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.drivers import build_driver
from bisnesgpt.engines.wwebjs.engine import WebEngine, ready_condition
from bisnesgpt.engines.wwebjs.inbound import InboundRecorder
from bisnesgpt.engines.wwebjs.leases import make_holder
from bisnesgpt.engines.wwebjs.manager import SessionManager
from bisnesgpt.engines.wwebjs.store import SESSION_STATUSES, AuthStore
from bisnesgpt.health import metrics
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.queues import WWEBJS
from bisnesgpt.messaging.wakeups import Wakeups
from bisnesgpt.messaging.worker import QueueWorker, SendJobProcessor
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext

log = logging.getLogger(__name__)


class WebSessionsComponent(Component):
    """Keeps this process's share of the WhatsApp Web sessions alive."""

    name = "wwebjs_sessions"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manager: SessionManager | None = None
        self.recorder: InboundRecorder | None = None

    async def start(self, ctx: ProcessContext) -> None:
        holder = make_holder(ctx.process_name)
        driver = build_driver(ctx.settings, ctx.db, ctx.database_url, process_name=ctx.process_name, holder=holder)
        self.recorder = InboundRecorder(ctx.db)
        self.manager = SessionManager(
            ctx.settings, ctx.db, ctx.redis, ctx.redis_url, driver, AuthStore(secret_box(ctx.settings), driver.name),
            ctx.events, process_name=ctx.process_name, holder=holder, pid=ctx.pid,
            on_inbound=self.recorder.on_inbound, on_ack=self.recorder.on_ack,
        )
        await self.manager.start()

    async def stop(self) -> None:
        if self.manager is not None:
            await self.manager.stop()
        if self.recorder is not None:
            await self.recorder.close()

    async def checks(self) -> dict[str, Check]:
        manager = self.manager
        if manager is None:
            return {self.name: Check(False, "not started")}
        summary = manager.summary()
        for status in SESSION_STATUSES:
            wwebjs_metrics.SESSIONS.labels(status).set(summary["statuses"].get(status, 0))
        wwebjs_metrics.STANDBY_SESSIONS.set(summary["standby"])
        stale_after = 3 * self.settings.wwebjs_reconcile_interval_ms / 1000 + 10
        last = manager.last_tick_ok or manager.started_at  # a grace period right after start
        fresh = time.time() - last < stale_after
        if not fresh:
            detail = f"session reconcile failing: {manager.last_error or 'not run yet'}"
        elif summary["mode"] == "standby":
            detail = (f"standby: owns no session; {summary['standby']} driven by "
                      f"{', '.join(summary['standbyHolders'])}")
        else:
            detail = f"{summary['owned']} session(s) owned, {manager.ready_count()} ready"
        return {self.name: Check(fresh, detail, summary)}

    def active_bots(self) -> int | None:
        return self.manager.ready_count() if self.manager is not None else 0


class WebSendWorkerComponent(Component):
    """The ``wwebjs-messages`` consumer, sending through the sessions of ``sessions``."""

    name = "wwebjs_worker"

    def __init__(self, settings: Settings, sessions: WebSessionsComponent) -> None:
        self.settings = settings
        self.sessions = sessions
        self.worker: QueueWorker | None = None
        self.processed = 0
        self.wakeups = Wakeups()
        self._wake_tasks: set[asyncio.Task[None]] = set()

    def _on_outcome(self, outcome: str, seconds: float) -> None:
        metrics.MESSAGES_PROCESSED.labels(WWEBJS.name, outcome).inc()
        metrics.SEND_SECONDS.labels(WWEBJS.name).observe(seconds)
        if outcome in ("sent", "failed"):
            self.processed += 1

    async def start(self, ctx: ProcessContext) -> None:
        if self.sessions.manager is None:
            raise RuntimeError("the wwebjs worker needs the session manager started first")
        engine = WebEngine(ctx.settings, self.sessions.manager)
        processor = SendJobProcessor(ctx.db, engine, WWEBJS, process_name=ctx.process_name,
                                     on_outcome=self._on_outcome, wakeups=self.wakeups)
        self.worker = QueueWorker(ctx.redis_url, WWEBJS, processor)
        await self.worker.start()
        self.sessions.manager.ready_listeners.append(self._session_ready)

    def _session_ready(self, key: SessionKey) -> None:
        """Send what waited for this session now, not after its (age-grown) deferral delay."""
        job_ids = self.wakeups.wake(ready_condition(key))
        if job_ids and self.worker is not None:
            task = asyncio.create_task(self._promote(key, job_ids), name=f"wwebjs-wake:{key}")
            self._wake_tasks.add(task)
            task.add_done_callback(self._wake_tasks.discard)

    async def _promote(self, key: SessionKey, job_ids: list[str]) -> None:
        assert self.worker is not None
        try:
            moved = await self.worker.promote(job_ids)
        except (RedisError, OSError) as exc:  # they still run once their delay is over
            log.warning("session %s ready; its %d waiting jobs not promoted: %s", key, len(job_ids), exc)
            return
        log.info("session %s ready: %d waiting job(s) promoted", key, moved)

    async def drain(self, timeout: float) -> None:
        if self.worker is not None:
            await self.worker.close(timeout)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.close(1.0)

    async def checks(self) -> dict[str, Check]:
        worker = self.worker
        if worker is None:
            return {self.name: Check(False, "not started")}
        detail = f"consuming {WWEBJS.name}" if worker.alive else f"consumer stopped: {worker.last_error}"
        return {self.name: Check(worker.alive, detail, {"activeJobs": worker.active_jobs})}

    def messages_processed(self) -> int:
        return self.processed

    def queue_workers(self) -> Sequence[QueueWorker]:
        return (self.worker,) if self.worker is not None else ()


def wwebjs_engine_components(settings: Settings) -> Sequence[Component]:
    """The wwebjs role's components, in start order (sessions, then the worker using them)."""
    sessions = WebSessionsComponent(settings)
    return [sessions, WebSendWorkerComponent(settings, sessions)]
