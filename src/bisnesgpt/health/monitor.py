"""This process's health: dependency checks, readiness, heartbeats and periodic metrics.

``HealthMonitor.report()`` is what ``GET /health`` answers: the database pool, Redis, one
``queue:<name>`` check per queue consumer the components run (``Component.queue_workers``)
and whatever the components add, run at once, each within ``CHECK_TIMEOUT``. A failing
check makes the process ``unhealthy`` (503) unless the role can serve without it: the api
without Redis is ``degraded`` (200), since it keeps accepting and storing sends.
``readiness()`` (``/health/ready``) asks only what accepting work needs: started, not
draining, the database answering.

``run()`` heartbeats every ``HEARTBEAT_INTERVAL`` (start to start) into this instance's own
``process_health`` row (``instances.py``) and on ``process:heartbeat``, writes
``process_metrics`` rows (RSS, CPU %, event-loop lag, messages processed, active bots, the
depth of the queues this role consumes), and every ``PROCESS_WATCH_INTERVAL`` watches the
other processes of its node (a dead pid is recorded as a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from bisnesgpt.core.periodic import Periodic
from bisnesgpt.core.tasks import cancel_and_wait
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health import metrics
from bisnesgpt.health.instances import Heartbeat, InstanceRecord
from bisnesgpt.health.probe import server_address
from bisnesgpt.health.queues import queue_depths, queues_of_role
from bisnesgpt.health.statuses import HeartbeatMetadata, ReportStatus, RowStatus, report_to_row
from bisnesgpt.processes.component import Check, HealthReporter
from bisnesgpt.processes.context import PeerSighting, ProcessContext

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.health")

CHECK_TIMEOUT = 2.0
# Checks a role can serve without: their failure makes it degraded, not unhealthy.
OPTIONAL_CHECKS: dict[Role, frozenset[str]] = {"api": frozenset({"redis"})}


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
    ready: bool
    instanceKey: str
    supervisor: str
    restarts: int | None


class ReadyBody(TypedDict):
    """The JSON body of ``GET /health/ready``."""

    status: Literal["ready", "not_ready"]
    processName: str
    role: Role
    pid: int
    started: bool
    draining: bool
    checks: dict[str, dict[str, object]]


class LiveBody(TypedDict):
    """The JSON body of ``GET /health/live``."""

    status: Literal["alive"]
    processName: str
    pid: int
    uptime: float


@dataclass
class HealthReport:
    """This process's checks and the verdict drawn from them."""

    status: ReportStatus
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Serving (healthy, or degraded without an optional dependency): /health answers 200."""
        return self.status in ("healthy", "degraded")


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
        self.instance = InstanceRecord(ctx.db, ctx.events, ctx.identity, ctx.settings)
        self.last_heartbeat: float | None = None
        self.error_count = 0
        self._optional = OPTIONAL_CHECKS.get(ctx.role, frozenset())
        self._process = psutil.Process(ctx.pid)
        self._process.cpu_percent(None)  # prime: the first reading is always 0
        self._lag = LoopLagProbe()
        self._watch = Periodic("process-watch", ctx.settings.process_watch_interval / 1000, self._watch_node,
                               first_delay=ctx.settings.process_watch_interval / 1000)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- /health ----------------------------------------------------------------------------

    async def report(self) -> HealthReport:
        """Run every check at once (each within CHECK_TIMEOUT); draining and starting win over any verdict."""
        ctx = self.ctx
        database = asyncio.ensure_future(self._guard(self._check_database(), ctx.database_url))
        redis = asyncio.ensure_future(self._guard(self._check_redis(), ctx.redis_url))
        # Before the process is ready its components have not started: their checks would only say so.
        reporting = self.components if ctx.ready.is_set() or ctx.draining.is_set() else ()
        contributed = await asyncio.gather(*(self._component_checks(component) for component in reporting))
        checks: dict[str, Check] = {"database": await database, "redis": await redis}
        for component, extra in zip(reporting, contributed, strict=True):
            for worker in component.queue_workers():
                checks[f"queue:{worker.spec.name}"] = Check(
                    worker.alive, "consumer running" if worker.alive else "consumer stopped",
                    {"activeJobs": worker.active_jobs, "lastError": worker.last_error},
                )
            checks.update(extra)
        return HealthReport(self._verdict(checks), checks)

    def _verdict(self, checks: dict[str, Check]) -> ReportStatus:
        if self.ctx.draining.is_set():
            return "draining"
        if not self.ctx.ready.is_set():
            return "starting"
        failing = {name for name, check in checks.items() if not check.ok}
        if not failing:
            return "healthy"
        return "degraded" if failing <= self._optional else "unhealthy"

    async def _watch_node(self) -> None:
        await self.instance.watch()

    async def _component_checks(self, component: HealthReporter) -> dict[str, Check]:
        try:
            return await asyncio.wait_for(component.checks(), CHECK_TIMEOUT)
        except TimeoutError:
            return {component.name: Check(False, "check timed out")}
        except Exception as exc:
            return {component.name: Check(False, f"check raised {exc!r}")}

    async def _guard(self, check: Awaitable[Check], url: str) -> Check:
        server = {"server": server_address(url)}
        try:
            result: Check = await asyncio.wait_for(check, CHECK_TIMEOUT)
            return Check(result.ok, result.detail, {**result.data, **server})
        except TimeoutError:
            return Check(False, "timed out", server)
        except BisnesgptError as exc:
            return Check(False, exc.detail, server)
        except (RedisError, OSError) as exc:
            return Check(False, str(exc) or type(exc).__name__, server)

    async def _check_database(self) -> Check:
        await self.ctx.db.ping()
        stats = self.ctx.db.stats()
        return Check(True, "pool ok", {"pool": stats})

    async def _check_redis(self) -> Check:
        started = time.monotonic()
        await cast(Awaitable[bool], self.ctx.redis.ping())
        return Check(True, "ping ok", {"latencyMs": round((time.monotonic() - started) * 1000, 2)})

    async def readiness(self) -> tuple[int, ReadyBody]:
        """(HTTP status, body) for GET /health/ready: 200 when started, not draining, the database answering."""
        ctx = self.ctx
        database = await self._guard(self._check_database(), ctx.database_url)
        started, draining = ctx.ready.is_set(), ctx.draining.is_set()
        ready = started and not draining and database.ok
        body: ReadyBody = {"status": "ready" if ready else "not_ready", "processName": ctx.process_name,
                           "role": ctx.role, "pid": ctx.pid, "started": started, "draining": draining,
                           "checks": {"database": database.as_dict()}}
        return (200 if ready else 503), body

    def liveness(self) -> LiveBody:
        """The body of GET /health/live: answering at all is the proof (the event loop runs)."""
        return {"status": "alive", "processName": self.ctx.process_name, "pid": self.ctx.pid,
                "uptime": round(self.ctx.uptime, 3)}

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
            "ready": self.ctx.ready.is_set(),
            "instanceKey": self.ctx.identity.instance_key,
            "supervisor": self.ctx.identity.supervisor,
            "restarts": self.instance.restarts,
        }
        return (200 if report.ok else 503), body

    # --- heartbeats -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin heartbeating every HEARTBEAT_INTERVAL, watching this node's processes and measuring loop lag."""
        self._lag.start()
        self._watch.start()
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    def beat_now(self) -> None:
        """Heartbeat at once instead of at the next interval (the process just became ready)."""
        self._wake.set()

    async def stop(self, final_status: RowStatus = "stopped") -> None:
        """Stop heartbeating; a last heartbeat says ``final_status`` and a clean stop is recorded."""
        self._lag.stop()
        await self._watch.stop()
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self.beat(status_override=final_status)
        if final_status == "stopped":
            await self.instance.finish()

    async def _run(self) -> None:
        interval = self.ctx.settings.heartbeat_interval / 1000
        while True:
            began = time.monotonic()
            self._wake.clear()
            try:
                await self.beat()
            except Exception:  # a heartbeat must never stop for good
                log.exception("heartbeat failed")
            # Start to start: a slow beat (a check timing out) does not push the next one back.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, interval - (time.monotonic() - began)))

    async def beat(self, status_override: RowStatus | None = None) -> None:
        """One heartbeat: this instance's process_health row, process_metrics rows, and ``process:heartbeat``."""
        report, depths = await asyncio.gather(self.report(), self._queue_depths())
        status: RowStatus = status_override or report_to_row(report.status)
        if report.status == "unhealthy" and status_override is None:
            self.error_count += 1
        rss_mb = self._process.memory_info().rss / (1024 * 1024)
        cpu = self._process.cpu_percent(None)
        lag = self._lag.read_and_reset()
        metrics.EVENT_LOOP_LAG.set(lag)
        failing = {n: c.detail for n, c in report.checks.items() if not c.ok}
        names = ["rss_mb", "cpu_percent", "event_loop_lag_ms", "messages_processed", "active_bots"]
        values = [rss_mb, cpu, lag * 1000, float(self.messages_processed()), float(self.active_bots())]
        kinds = ["gauge", "gauge", "gauge", "counter", "gauge"]
        meta = ["{}"] * len(names)
        for queue, backlog in depths.items():
            metrics.QUEUE_DEPTH.labels(queue).set(backlog)
            names.append("queue_depth")
            values.append(float(backlog))
            kinds.append("gauge")
            meta.append(json.dumps({"queue": queue}))
        metadata: HeartbeatMetadata = {"failing": failing, "eventLoopLagMs": round(lag * 1000, 2),
                                       "queueDepth": depths}
        heartbeat = Heartbeat(status=status, uptime_s=int(self.ctx.uptime), memory_mb=int(rss_mb),
                              cpu_percent=round(cpu, 2), active_bots=self.active_bots(),
                              messages_processed=self.messages_processed(), metadata=metadata,
                              last_error="; ".join(f"{n}: {d}" for n, d in failing.items()) or None,
                              ready=self.ctx.ready.is_set())
        try:
            await self.instance.beat(heartbeat)
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
        }, namespace=self.ctx.namespace)

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
