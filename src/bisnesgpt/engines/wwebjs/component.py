"""The ``wwebjs`` role: the session manager and the ``wwebjs-messages`` worker.

Order matters at shutdown: the runtime drains every component, then stops them in reverse
order, so the worker finishes its in-flight sends while the sessions are still connected,
and the sessions disconnect last (credentials stay; leases are released for a successor).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from bisnesgpt.engines.queue_components import SendQueueComponent
from bisnesgpt.engines.wwebjs import metrics as wwebjs_metrics
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.drivers import build_driver
from bisnesgpt.engines.wwebjs.engine import WebEngine, ready_condition
from bisnesgpt.engines.wwebjs.inbound import InboundRecorder
from bisnesgpt.engines.wwebjs.inbound_media import InboundMediaKeeper
from bisnesgpt.engines.wwebjs.manager import SessionManager
from bisnesgpt.engines.wwebjs.status import SESSION_STATUSES
from bisnesgpt.engines.wwebjs.store import AuthStore
from bisnesgpt.engines.wwebjs.stored_media import StoredMediaReader
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.media.library import MediaLibrary, build_store
from bisnesgpt.media.signing import MediaUrlSigner
from bisnesgpt.messaging.queues import WWEBJS
from bisnesgpt.messaging.wakeups import Wakeups
from bisnesgpt.processes.component import Check, Component, HealthReporter
from bisnesgpt.processes.context import ProcessContext

log = logging.getLogger(__name__)


class WebSessionsComponent(Component, HealthReporter):
    """Keeps this process's share of the WhatsApp Web sessions alive."""

    name = "wwebjs-sessions"

    def __init__(self, ctx: ProcessContext) -> None:
        self.settings = ctx.settings
        driver = build_driver(ctx.settings, ctx.db, ctx.database_url, process_name=ctx.process_name,
                              holder=ctx.holder)
        self.media_store = build_store(ctx.settings)
        self.library = MediaLibrary(ctx.db, self.media_store, ctx.settings)
        keeper = InboundMediaKeeper(self.library, MediaUrlSigner.from_settings(ctx.settings))
        self.recorder = InboundRecorder(ctx.db, media=keeper)
        self.manager = SessionManager(
            ctx.settings, ctx.db, ctx.redis, ctx.coordinator, driver, AuthStore(secret_box(ctx.settings), driver.name),
            ctx.events, process_name=ctx.process_name, holder=ctx.holder, pid=ctx.pid, namespace=ctx.namespace,
            on_inbound=self.recorder.on_inbound, on_ack=self.recorder.on_ack,
            on_notification=self.recorder.on_notification,
        )

    async def start(self) -> None:
        """Open the media store and the driver, and begin reconciling sessions."""
        await self.media_store.open()
        await self.manager.start()

    async def stop(self) -> None:
        """Disconnect the sessions (credentials stay) and release their leases."""
        await self.manager.stop()
        await self.recorder.close()
        await self.media_store.close()

    async def checks(self) -> dict[str, Check]:
        """``wwebjs_sessions``: the reconcile loop is fresh; owned/ready/standby counts."""
        manager = self.manager
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
        return {"wwebjs_sessions": Check(fresh, detail, dict(summary))}

    def active_bots(self) -> int | None:
        """Sessions ready to send."""
        return self.manager.ready_count()


class WebSendWorkerComponent(SendQueueComponent):
    """The ``wwebjs-messages`` consumer, sending through the sessions of ``sessions``.

    Started after the sessions and drained before they stop: sends in flight finish while
    the sessions are still up.
    """

    name = "wwebjs-send"

    def __init__(self, ctx: ProcessContext, sessions: WebSessionsComponent) -> None:
        self.sessions = sessions
        self.wakeups = Wakeups()
        self._wake_tasks: set[asyncio.Task[None]] = set()
        # The media store is the sessions component's, opened before this worker starts.
        stored_media = StoredMediaReader(sessions.library, ctx.settings.wwebjs_media_max_bytes)
        engine = WebEngine(ctx.settings, sessions.manager, db=ctx.db, stored_media=stored_media)
        # A failure after the driver call is recorded only while this process still owns the session.
        super().__init__(ctx, WWEBJS, engine, wakeups=self.wakeups, outcome_fence=sessions.manager.fence_outcome)
        sessions.manager.ready_listeners.append(self._session_ready)

    def _session_ready(self, key: SessionKey) -> None:
        """Send what waited for this session now, not after its (age-grown) deferral delay."""
        job_ids = self.wakeups.wake(ready_condition(key))
        if job_ids:
            task = asyncio.create_task(self._promote(key, job_ids), name=f"wwebjs-wake:{key}")
            self._wake_tasks.add(task)
            task.add_done_callback(self._wake_tasks.discard)

    async def _promote(self, key: SessionKey, job_ids: list[str]) -> None:
        try:
            moved = await self.worker.promote(job_ids)
        except (RedisError, OSError) as exc:  # they still run once their delay is over
            log.warning("session %s ready; its %d waiting jobs not promoted: %s", key, len(job_ids), exc)
            return
        log.info("session %s ready: %d waiting job(s) promoted", key, moved)

    async def checks(self) -> dict[str, Check]:
        """``wwebjs_worker``: the consumer is running."""
        worker = self.worker
        detail = f"consuming {WWEBJS.name}" if worker.alive else f"consumer stopped: {worker.last_error}"
        return {"wwebjs_worker": Check(worker.alive, detail, {"activeJobs": worker.active_jobs})}


def wwebjs_components(ctx: ProcessContext) -> list[Component]:
    """The wwebjs role's components, in start order (sessions, then the worker using them)."""
    sessions = WebSessionsComponent(ctx)
    return [sessions, WebSendWorkerComponent(ctx, sessions)]
