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
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bisnesgpt.coordination.channels import channel_name, stamped
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health.events import Severity
from bisnesgpt.health.instance import node_id
from bisnesgpt.infra.redis import redis_client

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.orchestrator")

# How a slot's process ended, for its row and its start attempt: crashed (a fault: it
# died, or hung; it will be restarted), restarting (a stop that was asked for — memory
# limit, a clean exit 0 — and a restart follows), errored (given up), stopped (at shutdown).
ExitedStatus = Literal["crashed", "restarting", "errored", "stopped"]


class RecordSink(Protocol):
    """Where the supervisor hands its writes: the ``Recorder`` thread (a list, in tests)."""

    def start(self) -> None:
        """Begin writing (before the first child is spawned)."""
        ...

    def event(self, process_name: str, event_type: str, data: Mapping[str, object],
              severity: Severity = "info") -> None:
        """A process event for ``process_events``."""
        ...

    def exited(self, process_name: str, role: str, instance_id: int, *, status: ExitedStatus, pid: int,
               error: str | None, exited_at: float) -> None:
        """A slot's process exited (``process_health``, unless a newer process already heartbeated)."""
        ...

    def restarts(self, process_name: str, role: str, instance_id: int, restarts: int) -> None:
        """How often a slot was restarted (``process_health.restarts``)."""
        ...

    def publish(self, channel: str, payload: Mapping[str, object]) -> None:
        """A coordinator message (``process:status``, ``process:shutdown``)."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``) and stop."""
        ...


@dataclass(frozen=True)
class _Event:
    process_name: str
    event_type: str
    data: Mapping[str, object]
    severity: Severity


@dataclass(frozen=True)
class _Exited:
    process_name: str
    role: str
    instance_id: int
    status: ExitedStatus
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
    payload: Mapping[str, object]


_STOP = object()


class Recorder:
    """Fire-and-forget writes from the arbiter loop, done in order by one thread."""

    def __init__(self, database_url: str, redis_url: str, namespace: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.namespace = namespace
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="orchestrator-recorder", daemon=True)
        # Children run on our node, under our pid: what tells our rows from another supervisor's.
        self.node = node_id()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def event(self, process_name: str, event_type: str, data: Mapping[str, object],
              severity: Severity = "info") -> None:
        """Queue a process event."""
        self._queue.put(_Event(process_name, event_type, data, severity))

    def exited(self, process_name: str, role: str, instance_id: int, *, status: ExitedStatus, pid: int,
               error: str | None, exited_at: float) -> None:
        """Queue the mark of an exit (``exited_at``: wall-clock seconds, to compare with heartbeats)."""
        self._queue.put(_Exited(process_name, role, instance_id, status, pid, error, exited_at))

    def restarts(self, process_name: str, role: str, instance_id: int, restarts: int) -> None:
        """Queue a slot's restart count."""
        self._queue.put(_Restarts(process_name, role, instance_id, restarts))

    def publish(self, channel: str, payload: Mapping[str, object]) -> None:
        """Queue a coordinator message (under the deployment's namespace, stamped when sent)."""
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

    async def _write(self, db: Database, redis: aioredis.Redis, item: object) -> None:
        if isinstance(item, _Publish):
            await redis.publish(channel_name(self.namespace, item.channel),
                                json.dumps(stamped(redis, dict(item.payload), self.namespace), default=str))
            return
        await db.open()  # no-op once open; retried on the next item after a failure
        if isinstance(item, _Event):
            await db.execute(SQL.log_event, item.process_name, item.event_type, item.data, item.severity)
        elif isinstance(item, _Exited):
            await db.execute(SQL.mark_exited, item.process_name, item.status, item.pid, item.error, self.node,
                             self.host, self.pid)
            await db.execute(SQL.end_start_of_pid, item.process_name, item.pid, self.node, item.status, item.error,
                             item.exited_at)
        elif isinstance(item, _Restarts):
            await db.execute(SQL.set_restarts, item.process_name, item.role, item.instance_id, item.restarts,
                             self.pid, self.node)
