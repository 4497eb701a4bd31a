"""This instance's rows — its start attempt and its ``process_health`` row — and the watch
over the other instances of its node.

* ``claim`` (at start, as soon as the pool is open): records the start attempt, counts the
  slot's restarts (earlier attempts under the same supervisor), and claims the row: its own,
  a gone one of its slot (taken over, counters reset: only the current generation is shown)
  or, beside a living instance of the same name, a new one — never a stranger's.
* ``beat``: a heartbeat into that row only (claimed again if it went missing).
* ``finish`` / ``crashed``: how the attempt ended, written by the process itself.
* ``watch``: every ``PROCESS_WATCH_INTERVAL`` every process looks at the open start
  attempts of its node; one whose pid is gone ended without a word (kill -9, OOM killer):
  its row turns ``crashed`` and a ``crash`` event is recorded, exactly once, whatever
  supervises it. An orchestrator's children are left to their orchestrator while it
  lives (it reaps them and records the exit code or signal).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.health.instance import InstanceIdentity, process_alive
from bisnesgpt.health.statuses import HeartbeatMetadata, RowStatus

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.health")


@dataclass(frozen=True)
class OpenStart(RowRecord):
    """A start attempt of this node that has not ended (``open_starts_on_node``)."""

    instance_key: str
    process_name: str
    pid: int
    ppid: int | None
    supervisor: str | None
    started_at: float
    age: float
    row_status: str | None


@dataclass(frozen=True)
class Heartbeat:
    """What one heartbeat writes into the row."""

    status: RowStatus
    uptime_s: int
    memory_mb: int
    cpu_percent: float
    active_bots: int
    messages_processed: int
    metadata: HeartbeatMetadata
    last_error: str | None
    ready: bool


class InstanceRecord:
    """The rows of one process instance (see the module docstring); every write is best effort."""

    def __init__(self, db: Database, events: EventRecorder, identity: InstanceIdentity, settings: Settings) -> None:
        self.db = db
        self.events = events
        self.identity = identity
        self.settings = settings
        self.claimed = False
        self.restarts: int | None = None

    def declared(self) -> HeartbeatMetadata:
        """The limits this process is judged by, declared in every write of its row."""
        return {"instanceId": self.settings.instance_id, "maxHeartbeatAgeMs": self.settings.max_heartbeat_age,
                "heartbeatIntervalMs": self.settings.heartbeat_interval}

    async def claim(self, status: RowStatus = "starting") -> bool:
        """Record the start attempt and claim the row (after settling the dead of this node); False if not written."""
        me = self.identity
        try:
            await self.watch()
            restarts = await self.db.fetchval(SQL.record_start, me.process_name, me.role, me.instance_key, me.node,
                                              me.host, me.ppid, me.supervisor, me.started_at, me.pid)
            self.restarts = int(restarts or 0)
            await self.db.fetchval(SQL.claim_instance, me.process_name, status, me.pid, me.instance_key, me.node,
                                   me.host, me.ppid, me.supervisor, me.started_at, self.restarts, self.declared())
        except BisnesgptError as exc:
            log.warning("start attempt not recorded: %s", exc.detail)
            return False
        self.claimed = True
        return True

    async def beat(self, heartbeat: Heartbeat) -> None:
        """Write a heartbeat into this instance's own row (claiming it first when it is missing)."""
        if not self.claimed:
            await self.claim(heartbeat.status)
        result = await self._write(heartbeat)
        if result.endswith(" 0"):  # the row went missing (taken over while we were frozen): claim a new one
            self.claimed = False
            await self.claim(heartbeat.status)
            await self._write(heartbeat)

    async def _write(self, heartbeat: Heartbeat) -> str:
        return await self.db.execute(
            SQL.beat_instance, self.identity.instance_key, heartbeat.status, heartbeat.uptime_s, heartbeat.memory_mb,
            heartbeat.cpu_percent, heartbeat.active_bots, heartbeat.messages_processed,
            {**heartbeat.metadata, **self.declared()}, heartbeat.last_error, heartbeat.ready)

    async def ready(self) -> None:
        """The start attempt reached ready."""
        try:
            await self.db.execute(SQL.start_ready, self.identity.instance_key)
        except BisnesgptError as exc:
            log.warning("ready not recorded: %s", exc.detail)

    async def finish(self) -> None:
        """A clean stop (after the last heartbeat said ``stopped``): the attempt ends; a row a
        living instance of the slot speaks for is deleted."""
        try:
            await self.db.fetchval(SQL.end_start, self.identity.instance_key, "stopped", None)
            await self.db.execute(SQL.leave_slot, self.identity.instance_key)
        except BisnesgptError as exc:
            log.warning("stop not recorded: %s", exc.detail)

    async def crashed(self, error: str, *, uptime_s: float) -> None:
        """This process is dying of ``error``: the attempt ends ``crashed``, the row says so, a ``crash`` event."""
        me = self.identity
        try:
            ended = await self.db.fetchval(SQL.end_start, me.instance_key, "crashed", error)
            await self.db.execute(SQL.mark_instance_crashed, me.instance_key, error)
        except BisnesgptError as exc:
            log.warning("crash not recorded: %s", exc.detail)
            return
        if ended is not None:
            await self.events.record("crash", {"pid": me.pid, "signal": None, "exitCode": 1, "error": error,
                                               "uptimeSeconds": round(uptime_s, 3), "supervisor": me.supervisor},
                                     "error")

    # --- the watch over this node -------------------------------------------------------------

    async def watch(self) -> int:
        """Settle every open start attempt of this node whose process is gone; how many were found dead."""
        rows = await self.db.fetch(SQL.open_starts_on_node, self.identity.node, self.identity.instance_key)
        dead = 0
        for start in map(OpenStart.from_row, rows):
            if process_alive(start.pid, start.started_at):
                continue
            if start.supervisor == "orchestrator" and start.ppid and process_alive(start.ppid):
                continue  # its orchestrator reaps it and records how it ended
            dead += 1
            await self._settle(start)
        return dead

    async def _settle(self, start: OpenStart) -> None:
        if start.row_status == "stopped":  # it stopped cleanly; only the end of its attempt was not written
            await self.db.fetchval(SQL.end_start, start.instance_key, "stopped", None)
            return
        detail = (f"pid {start.pid} gone without stopping (seen by {self.identity.process_name} "
                  f"pid {self.identity.pid} on {self.identity.host})")
        if await self.db.fetchval(SQL.end_start, start.instance_key, "crashed", detail) is None:
            return  # another process settled it first
        await self.db.execute(SQL.mark_instance_crashed, start.instance_key, detail)
        log.warning("%s (pid %d) is gone without stopping: recorded as crashed", start.process_name, start.pid)
        await self.events.record("crash", {"pid": start.pid, "signal": None, "exitCode": None,
                                           "uptimeSeconds": round(start.age, 3), "supervisor": start.supervisor,
                                           "observedBy": self.identity.process_name, "detail": detail,
                                           "observedAt": time.time()},
                                 "error", process_name=start.process_name)
