"""This process's health: dependency checks, heartbeats and periodic metrics.

``HealthMonitor.report()`` is what ``GET /health`` answers: the database pool, Redis, one
``queue:<name>`` check per queue consumer the components run (``Component.queue_workers``)
and whatever the components add. ``run()`` heartbeats every ``HEARTBEAT_INTERVAL`` into
``process_health`` (through ``update_process_health``) and on the ``process:heartbeat``
channel, and writes ``process_metrics`` rows: RSS, CPU %, event-loop lag, messages
processed, active bots and the depth of the queues this role consumes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypedDict, cast

import psutil
from redis.exceptions import RedisError

from bisnesgpt import __version__
from bisnesgpt.config import Role
from bisnesgpt.coordination.channels import PROCESS_HEARTBEAT, publish
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.tasks import cancel_and_wait
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health import metrics
from bisnesgpt.health.overview import HeartbeatMetadata
from bisnesgpt.health.queues import queue_depths, queues_of_role
from bisnesgpt.processes.component import Check, HealthReporter
from bisnesgpt.processes.context import PeerSighting, ProcessContext

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.health")

CHECK_TIMEOUT = 2.0

# What /health says of this process.
ReportStatus = Literal["healthy", "unhealthy", "draining"]
# process_health.status as a heartbeat writes it: unhealthy is ``error``; the last
# heartbeat of a process says ``stopped``.
RowStatus = Literal["healthy", "draining", "stopped", "error"]


class MemoryJson(TypedDict):
    """Resident and virtual size of this process, in bytes."""

    rss: int
    vms: int


class PeerJson(TypedDict):
    """A sibling in ``/health``'s ``peers``: its status and what each channel last said."""

    status: str | None
    pid: int | None
    supervisor: PeerSighting | None
    redis: PeerSighting | None


class HealthBody(TypedDict):
    """The JSON body of ``GET /health``."""

    processName: str
    role: Role
    instanceId: int
    pid: int
    host: str
    status: ReportStatus
    uptime: float
    startedAt: str | None
    memory: MemoryJson
    lastHeartbeat: str | None
    heartbeatIntervalMs: int
    errorCount: int
    activeBots: int
    messagesProcessed: int
    eventLoopLagMs: float
    supervised: bool
    peers: dict[str, PeerJson]
    version: str
    checks: dict[str, dict[str, object]]


@dataclass
class HealthReport:
    """This process's checks and the verdict drawn from them."""

    status: ReportStatus
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Healthy: /health answers 200."""
        return self.status == "healthy"


class LoopLagProbe:
    """Measures event-loop lag: how late a 100 ms sleep wakes up (max since last read)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._max_lag = 0.0
        self.last_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin measuring (a task of its own)."""
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self._max_lag = max(self._max_lag, time.monotonic() - before - self.interval)

    def read_and_reset(self) -> float:
        """The worst lag (seconds) since the last call, which it also keeps as ``last_lag``."""
        lag, self._max_lag = self._max_lag, 0.0
        self.last_lag = lag
        return lag

    def stop(self) -> None:
        """Stop measuring."""
        if self._task is not None:
            self._task.cancel()


class HealthMonitor:
    """``/health`` and the heartbeat of one process, from its pools and its components' reports."""

    def __init__(self, ctx: ProcessContext, components: Sequence[HealthReporter]) -> None:
        self.ctx = ctx
        self.components = components
        self.last_heartbeat: float | None = None
        self.error_count = 0
        self._process = psutil.Process(ctx.pid)
        self._process.cpu_percent(None)  # prime: the first reading is always 0
        self._lag = LoopLagProbe()
        self._task: asyncio.Task[None] | None = None

    # --- /health ----------------------------------------------------------------------------

    async def report(self) -> HealthReport:
        """Run every check (each within CHECK_TIMEOUT); draining wins over any verdict."""
        checks: dict[str, Check] = {
            "database": await self._guard(self._check_database()),
            "redis": await self._guard(self._check_redis()),
        }
        for component in self.components:
            for worker in component.queue_workers():
                checks[f"queue:{worker.spec.name}"] = Check(
                    worker.alive, "consumer running" if worker.alive else "consumer stopped",
                    {"activeJobs": worker.active_jobs, "lastError": worker.last_error},
                )
            try:
                contributed = await asyncio.wait_for(component.checks(), CHECK_TIMEOUT)
            except TimeoutError:
                contributed = {component.name: Check(False, "check timed out")}
            except Exception as exc:
                contributed = {component.name: Check(False, f"check raised {exc!r}")}
            checks.update(contributed)
        status: ReportStatus
        if self.ctx.draining.is_set():
            status = "draining"
        else:
            status = "healthy" if all(c.ok for c in checks.values()) else "unhealthy"
        return HealthReport(status, checks)

    async def _guard(self, check: Awaitable[Check]) -> Check:
        try:
            result: Check = await asyncio.wait_for(check, CHECK_TIMEOUT)
            return result
        except TimeoutError:
            return Check(False, "timed out")
        except BisnesgptError as exc:
            return Check(False, exc.detail)
        except (RedisError, OSError) as exc:
            return Check(False, str(exc) or type(exc).__name__)

    async def _check_database(self) -> Check:
        await self.ctx.db.ping()
        stats = self.ctx.db.stats()
        return Check(True, "pool ok", {"pool": stats})

    async def _check_redis(self) -> Check:
        started = time.monotonic()
        await cast(Awaitable[bool], self.ctx.redis.ping())
        return Check(True, "ping ok", {"latencyMs": round((time.monotonic() - started) * 1000, 2)})

    def active_bots(self) -> int:
        """Sessions/phones served by all components."""
        return sum(c.active_bots() or 0 for c in self.components)

    def messages_processed(self) -> int:
        """Messages finished by all components since the process started."""
        return sum(c.messages_processed() for c in self.components)

    def memory(self) -> MemoryJson:
        """This process's memory now."""
        info = self._process.memory_info()
        return {"rss": int(info.rss), "vms": int(info.vms)}

    def consumed_queues(self) -> list[str]:
        """Queues whose depth this process reports: its role's queues and its workers' queues."""
        names = {w.spec.name for c in self.components for w in c.queue_workers()}
        names.update(spec.name for spec in queues_of_role(self.ctx.role))
        return sorted(names)

    async def body(self) -> tuple[int, HealthBody]:
        """(HTTP status, JSON body) for GET /health."""
        report = await self.report()
        body: HealthBody = {
            "processName": self.ctx.process_name,
            "role": self.ctx.role,
            "instanceId": self.ctx.settings.instance_id,
            "pid": self.ctx.pid,
            "host": self.ctx.host,
            "status": report.status,
            "uptime": round(self.ctx.uptime, 3),
            "startedAt": _iso(self.ctx.started_wall),
            "memory": self.memory(),
            "lastHeartbeat": _iso(self.last_heartbeat),
            "heartbeatIntervalMs": self.ctx.settings.heartbeat_interval,
            "errorCount": self.error_count,
            "activeBots": self.active_bots(),
            "messagesProcessed": self.messages_processed(),
            "eventLoopLagMs": round(self._lag.last_lag * 1000, 2),
            "supervised": self.ctx.supervised,
            # What this process last heard about its siblings (orchestrator status_update
            # broadcast and the process:status / process:heartbeat channels).
            "peers": {name: {"status": peer.get("status"), "pid": peer.get("pid"),
                             "supervisor": peer.get("supervisor"), "redis": peer.get("redis")}
                      for name, peer in sorted(self.ctx.peers.items())},
            "version": __version__,
            "checks": {name: check.as_dict() for name, check in report.checks.items()},
        }
        return (200 if report.ok else 503), body

    # --- heartbeats -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin heartbeating every HEARTBEAT_INTERVAL (and measuring loop lag)."""
        self._lag.start()
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self, final_status: RowStatus = "stopped") -> None:
        """Stop heartbeating; a last heartbeat says ``final_status``."""
        self._lag.stop()
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self.beat(status_override=final_status)

    async def _run(self) -> None:
        interval = self.ctx.settings.heartbeat_interval / 1000
        while True:
            await self.beat()
            await asyncio.sleep(interval)

    async def beat(self, status_override: RowStatus | None = None) -> None:
        """One heartbeat: the row in process_health, process_metrics rows, and ``process:heartbeat``."""
        report = await self.report()
        status = status_override or report.status
        if not report.ok and status_override is None:
            self.error_count += 1
        rss_mb = self._process.memory_info().rss / (1024 * 1024)
        cpu = self._process.cpu_percent(None)
        lag = self._lag.read_and_reset()
        metrics.EVENT_LOOP_LAG.set(lag)
        failing = {n: c.detail for n, c in report.checks.items() if not c.ok}
        db_status: RowStatus = status if status in ("healthy", "draining", "stopped") else "error"
        names = ["rss_mb", "cpu_percent", "event_loop_lag_ms", "messages_processed", "active_bots"]
        values = [rss_mb, cpu, lag * 1000, float(self.messages_processed()), float(self.active_bots())]
        kinds = ["gauge", "gauge", "gauge", "counter", "gauge"]
        meta = ["{}"] * len(names)
        depths = await self._queue_depths()
        for queue, backlog in depths.items():
            metrics.QUEUE_DEPTH.labels(queue).set(backlog)
            names.append("queue_depth")
            values.append(float(backlog))
            kinds.append("gauge")
            meta.append(json.dumps({"queue": queue}))
        metadata: HeartbeatMetadata = {
            "failing": failing, "eventLoopLagMs": round(lag * 1000, 2), "queueDepth": depths,
            "instanceId": self.ctx.settings.instance_id, "maxHeartbeatAgeMs": self.ctx.settings.max_heartbeat_age}
        try:
            await self.ctx.db.execute(
                SQL.update_process_health, self.ctx.process_name, db_status, int(self.ctx.uptime), int(rss_mb),
                round(cpu, 2), 0, self.ctx.pid, self.active_bots(), self.messages_processed(), metadata,
                "; ".join(f"{n}: {d}" for n, d in failing.items()) or None, self.ctx.host,
            )
            await self.ctx.db.execute(SQL.insert_metrics, self.ctx.process_name, names, values, kinds, meta)
            metrics.HEARTBEATS.labels("ok").inc()
            self.last_heartbeat = time.time()
        except BisnesgptError as exc:
            metrics.HEARTBEATS.labels("db_error").inc()
            log.warning("heartbeat not written: %s", exc.detail)
        await publish(self.ctx.redis, PROCESS_HEARTBEAT, {
            "processName": self.ctx.process_name, "role": self.ctx.role, "pid": self.ctx.pid,
            "host": self.ctx.host, "status": status, "uptime": round(self.ctx.uptime, 1),
            "rssMb": round(rss_mb, 1), "cpu": cpu, "activeBots": self.active_bots(), "ts": time.time(),
        })

    async def _queue_depths(self) -> dict[str, int]:
        """Backlog of the consumed queues; {} while Redis is unreachable (the check says why)."""
        try:
            depths = await asyncio.wait_for(queue_depths(self.ctx.redis, self.consumed_queues()), CHECK_TIMEOUT)
        except (RedisError, OSError, TimeoutError):
            return {}
        return {name: depth.backlog for name, depth in depths.items()}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
