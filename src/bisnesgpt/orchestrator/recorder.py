"""The orchestrator's writes to PostgreSQL and Redis, off the arbiter loop.

The arbiter must never block on a slow or absent database, so it only enqueues: process
events (crash, restart, hang, memory_restart, give_up, …), ``process_health`` updates it
alone knows (a child crashed, how often a slot was restarted) and coordinator messages.
One background thread with its own event loop writes them in order, best effort: while
PostgreSQL or Redis is away, items are logged and dropped (the console and the log files
still have them), never retried forever.

``concurrent.futures.thread`` is imported here, at load, not lazily by the thread's first
``run_in_executor``: importing it registers at-fork hooks (acquire a lock before a fork,
release it after). Registered while the arbiter was inside ``Popen(preexec_fn=…)``, between
the two hooks, the "after" hook released a lock the recorder thread held ("release
unlocked lock"); the thread died and the orchestrator recorded nothing more (seen in CI).
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401
import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from bisnesgpt.coordination.channels import stamped
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import Severity
from bisnesgpt.infra.redis import redis_client

log = logging.getLogger(__name__)

LOG_EVENT = "SELECT log_process_event($1, $2, $3::jsonb, $4)"
# A reaped child's row: 'crashed' / 'errored' — unless a newer child of the slot already
# heartbeated (its heartbeat is later than this exit), which must not be overwritten.
MARK_EXITED = """
INSERT INTO process_health AS ph (process_name, role, instance_id, status, pid, last_error, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (process_name) DO UPDATE SET
    status = EXCLUDED.status,
    last_error = coalesce(EXCLUDED.last_error, ph.last_error),
    updated_at = now()
WHERE ph.pid IS NULL OR ph.pid = $5 OR ph.last_heartbeat IS NULL OR ph.last_heartbeat < to_timestamp($7)
"""
SET_RESTARTS = """
INSERT INTO process_health AS ph (process_name, role, instance_id, restarts)
VALUES ($1, $2, $3, $4)
ON CONFLICT (process_name) DO UPDATE SET restarts = EXCLUDED.restarts
"""


@dataclass(frozen=True)
class _Event:
    process_name: str
    event_type: str
    data: dict[str, Any]
    severity: Severity


@dataclass(frozen=True)
class _Exited:
    process_name: str
    role: str
    instance_id: int
    status: str
    pid: int
    error: str | None
    exited_at: float


@dataclass(frozen=True)
class _Restarts:
    process_name: str
    role: str
    instance_id: int
    restarts: int


@dataclass(frozen=True)
class _Publish:
    channel: str
    payload: dict[str, Any]


_STOP = object()


class Recorder:
    """Fire-and-forget writes from the arbiter loop, done in order by one thread."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="orchestrator-recorder", daemon=True)
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def event(self, process_name: str, event_type: str, data: dict[str, Any],
              severity: Severity = "info") -> None:
        self._queue.put(_Event(process_name, event_type, data, severity))

    def exited(self, process_name: str, role: str, instance_id: int, *, status: str, pid: int,
               error: str | None, exited_at: float) -> None:
        self._queue.put(_Exited(process_name, role, instance_id, status, pid, error, exited_at))

    def restarts(self, process_name: str, role: str, instance_id: int, restarts: int) -> None:
        self._queue.put(_Restarts(process_name, role, instance_id, restarts))

    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        self._queue.put(_Publish(channel, payload))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("recorder: %d item(s) not written at exit", self._queue.qsize())

    # --- the thread -------------------------------------------------------------------------

    def _main(self) -> None:
        while True:
            try:
                asyncio.run(self._consume())
                return
            except Exception:
                # Never die silently: the arbiter keeps enqueueing, a new loop keeps writing.
                log.exception("recorder: writer loop failed; starting it again")
                time.sleep(1)

    async def _consume(self) -> None:
        db = Database(self.database_url, min_size=0, max_size=2, application_name="bisnesgpt-orchestrator")
        redis = redis_client(self.redis_url, name="bisnesgpt:orchestrator")
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await loop.run_in_executor(None, self._queue.get)
                if item is _STOP:
                    return
                try:
                    await asyncio.wait_for(self._write(db, redis, item), 10)
                    self.written += 1
                except (BisnesgptError, RedisError, OSError, TimeoutError) as exc:
                    self.dropped += 1
                    log.warning("recorder: could not write %s: %s", type(item).__name__.strip("_"),
                                getattr(exc, "detail", None) or exc or type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()
            await db.close()

    async def _write(self, db: Database, redis: Any, item: object) -> None:
        if isinstance(item, _Publish):
            await redis.publish(item.channel, json.dumps(stamped(redis, item.payload), default=str))
            return
        await db.open()  # no-op once open; retried on the next item after a failure
        if isinstance(item, _Event):
            await db.execute(LOG_EVENT, item.process_name, item.event_type, item.data, item.severity)
        elif isinstance(item, _Exited):
            await db.execute(MARK_EXITED, item.process_name, item.role, item.instance_id, item.status,
                             item.pid, item.error, item.exited_at)
        elif isinstance(item, _Restarts):
            await db.execute(SET_RESTARTS, item.process_name, item.role, item.instance_id, item.restarts)
