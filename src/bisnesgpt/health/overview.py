"""Every process at a glance, from ``process_health``: what ``/health/all``, ``bisnesgpt
status`` and ``bisnesgpt doctor`` report.

Which processes *should* exist comes from the settings (``API_INSTANCES``,
``META_INSTANCES``, ``ENABLE_WWEBJS``, ``ENABLE_META``): a role switched off is
``disabled``, never ``down``; a row of an instance that is no longer expected (say
``api-2`` after scaling down) is listed but does not count.

A process is judged as ``v_process_health_overview`` judges it (migration 0003), by the
``MAX_HEARTBEAT_AGE`` it reports in its heartbeat (else ours; the original 30 s / 60 s are
half and all of the 60 s default):

* ``down`` — no heartbeat yet, last one ``MAX_HEARTBEAT_AGE`` old or older, or known to
  have stopped / crashed / been given up (the view: ``down``);
* ``unhealthy`` — heartbeating but reporting failing checks; ``draining`` — stopping
  (the view: ``degraded``);
* ``degraded`` — healthy but its heartbeat is at least half of ``MAX_HEARTBEAT_AGE`` old;
* ``healthy``.

A role is ``healthy`` when every expected instance is healthy or degraded, ``partial``
when only some are, ``down`` when none; the whole is healthy when every enabled role is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

import asyncpg

from bisnesgpt.config import ENGINE_ROLES, Role, Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.processes.context import process_name_for

SQL = load_queries("bisnesgpt.health")

# A process as judged here (see the module docstring).
JudgedStatus = Literal["healthy", "degraded", "unhealthy", "draining", "down", "disabled"]
# A role: all its expected instances ok, some, none, or switched off.
RoleStatus = Literal["healthy", "partial", "down", "disabled"]

DEAD_STATUSES = frozenset({"stopped", "crashed", "errored", "down"})
OK_STATUSES: frozenset[JudgedStatus] = frozenset({"healthy", "degraded"})


class HeartbeatMetadata(TypedDict, total=False):
    """``process_health.metadata`` as a heartbeat writes it (``monitor.py``)."""

    failing: dict[str, str]  # check name -> detail, for the failing checks
    eventLoopLagMs: float
    queueDepth: dict[str, int]
    instanceId: int
    maxHeartbeatAgeMs: int  # v_process_health_overview judges the row by the process's own limit


# A row as the database returns it, or a dict with the same keys.
Row = asyncpg.Record | Mapping[str, Any]


@dataclass(frozen=True)
class ProcessRow:
    """One ``process_health`` row as ``process_rows`` reads it."""

    process_name: str
    role: str
    instance_id: int
    status: str | None
    pid: int | None
    host: str | None
    last_heartbeat: datetime | None
    uptime_seconds: int | None
    memory_usage_mb: int | None
    cpu_usage_percent: float | None
    active_bots: int | None
    messages_processed: int | None
    error_count: int | None
    last_error: str | None
    restarts: int | None
    metadata: HeartbeatMetadata | None
    heartbeat_age: float | None
    view_status: str | None

    @classmethod
    def from_row(cls, row: Row) -> ProcessRow:
        """Its fields from the row (other columns are ignored)."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


class ProcessJson(TypedDict):
    """A process in ``/health/all`` and ``bisnesgpt status --json``."""

    processName: str
    role: str
    instanceId: int
    status: JudgedStatus
    reportedStatus: str | None
    viewStatus: str | None
    expected: bool
    pid: int | None
    host: str | None
    lastHeartbeat: str | None
    secondsSinceHeartbeat: float | None
    uptimeSeconds: int
    memoryMb: int
    cpuPercent: float
    restarts: int
    errorCount: int
    lastError: str | None
    activeBots: int
    messagesProcessed: int
    failing: dict[str, str]
    queueDepth: dict[str, int]


class RoleJson(TypedDict):
    """A role in ``/health/all``."""

    status: RoleStatus
    enabled: bool
    expectedInstances: int
    healthyInstances: int
    servedBy: NotRequired[str]


class OverviewJson(TypedDict):
    """The body of ``/health/all`` (before ``servedBy`` and ``timestamp``)."""

    status: Literal["healthy", "unhealthy"]
    maxHeartbeatAgeMs: int
    roles: dict[str, RoleJson]
    processes: list[ProcessJson]


@dataclass(frozen=True)
class ProcessView:
    """One process as judged: its verdict, whether the settings expect it, and its last heartbeat."""

    process_name: str
    role: str
    instance_id: int
    status: JudgedStatus
    reported_status: str | None
    expected: bool
    pid: int | None = None
    host: str | None = None
    last_heartbeat: datetime | None = None
    heartbeat_age_s: float | None = None
    uptime_s: int = 0
    memory_mb: int = 0
    cpu_percent: float = 0.0
    restarts: int = 0
    error_count: int = 0
    last_error: str | None = None
    active_bots: int = 0
    messages_processed: int = 0
    view_status: str | None = None
    metadata: HeartbeatMetadata = field(default_factory=HeartbeatMetadata)

    @property
    def ok(self) -> bool:
        """Healthy or degraded: it counts as serving."""
        return self.status in OK_STATUSES

    def as_dict(self) -> ProcessJson:
        """The JSON form (camelCase, the heartbeat's failing checks and queue depths)."""
        return {
            "processName": self.process_name, "role": self.role, "instanceId": self.instance_id,
            "status": self.status, "reportedStatus": self.reported_status, "viewStatus": self.view_status,
            "expected": self.expected, "pid": self.pid, "host": self.host,
            "lastHeartbeat": self.last_heartbeat.isoformat() if self.last_heartbeat else None,
            "secondsSinceHeartbeat": None if self.heartbeat_age_s is None else round(self.heartbeat_age_s, 3),
            "uptimeSeconds": self.uptime_s, "memoryMb": self.memory_mb, "cpuPercent": self.cpu_percent,
            "restarts": self.restarts, "errorCount": self.error_count, "lastError": self.last_error,
            "activeBots": self.active_bots, "messagesProcessed": self.messages_processed,
            "failing": self.metadata.get("failing") or {},
            "queueDepth": self.metadata.get("queueDepth") or {},
        }


@dataclass(frozen=True)
class RoleView:
    """One role: how many of its expected instances are ok."""

    role: str
    enabled: bool
    status: RoleStatus
    expected: int
    ok: int
    served_by: str | None = None  # "legacy" when the all-in-one process serves this role

    def as_dict(self) -> RoleJson:
        """The JSON form (``servedBy`` only when set)."""
        body: RoleJson = {"status": self.status, "enabled": self.enabled,
                          "expectedInstances": self.expected, "healthyInstances": self.ok}
        if self.served_by:
            body["servedBy"] = self.served_by
        return body


@dataclass(frozen=True)
class Overview:
    """Every role and process of the deployment, judged."""

    roles: dict[str, RoleView]
    processes: list[ProcessView]
    max_heartbeat_age_s: float

    @property
    def healthy(self) -> bool:
        """Every enabled role is healthy."""
        return all(r.status in ("healthy", "disabled") for r in self.roles.values())

    def expected_processes(self) -> list[ProcessView]:
        """The processes the settings ask for (not stale rows of instances scaled away)."""
        return [p for p in self.processes if p.expected]

    def as_dict(self) -> OverviewJson:
        """The JSON form."""
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "maxHeartbeatAgeMs": int(self.max_heartbeat_age_s * 1000),
            "roles": {name: role.as_dict() for name, role in self.roles.items()},
            "processes": [p.as_dict() for p in self.processes],
        }


def expected_names(settings: Settings, *, legacy: bool = False) -> dict[str, Role]:
    """Process name -> role for every process this deployment should be running."""
    if legacy:
        return {"legacy": "legacy"}
    return {process_name_for(role, i): role for role in ENGINE_ROLES for i in range(settings.instances_of(role))}


def judge(reported: str | None, heartbeat_age_s: float | None, max_age_s: float) -> JudgedStatus:
    """One process's status from its row (see the module docstring)."""
    if reported == "disabled":
        return "disabled"
    if heartbeat_age_s is None or reported in DEAD_STATUSES or heartbeat_age_s >= max_age_s:
        return "down"
    if reported == "draining":
        return "draining"
    if reported != "healthy":
        return "unhealthy"
    if heartbeat_age_s >= max_age_s / 2:
        return "degraded"
    return "healthy"


def build_overview(rows: Iterable[Row], settings: Settings, *, legacy: bool = False) -> Overview:
    """Judge ``rows`` (``process_rows``) against what the settings say should run."""
    max_age_s = settings.max_heartbeat_age / 1000
    expected = expected_names(settings, legacy=legacy)
    by_name = {row.process_name: row for row in map(ProcessRow.from_row, rows)}
    processes: list[ProcessView] = []
    for name in sorted(set(by_name) | set(expected), key=_sort_key):
        row = by_name.get(name)
        role = str(row.role) if row else expected[name]
        enabled = legacy or settings.role_enabled(_as_role(role))
        if row is None:
            processes.append(ProcessView(name, role, _instance_of(name), "down", None, True))
            continue
        status = judge(row.status, row.heartbeat_age, _declared_max_age_s(row) or max_age_s)
        if not enabled and name not in expected:
            status = "disabled"
        processes.append(ProcessView(
            name, role, int(row.instance_id), status, row.status, name in expected,
            pid=row.pid, host=row.host, last_heartbeat=row.last_heartbeat,
            heartbeat_age_s=row.heartbeat_age, uptime_s=int(row.uptime_seconds or 0),
            memory_mb=int(row.memory_usage_mb or 0), cpu_percent=float(row.cpu_usage_percent or 0),
            restarts=int(row.restarts or 0), error_count=int(row.error_count or 0),
            last_error=row.last_error, active_bots=int(row.active_bots or 0),
            messages_processed=int(row.messages_processed or 0), view_status=row.view_status,
            metadata=row.metadata or {},
        ))
    roles: dict[str, RoleView] = {r: _role_view(r, settings, processes, legacy=legacy) for r in ENGINE_ROLES}
    return Overview(roles, processes, max_age_s)


def _role_view(role: Role, settings: Settings, processes: list[ProcessView], *, legacy: bool) -> RoleView:
    if not settings.role_enabled(role):
        return RoleView(role, False, "disabled", 0, 0)
    serving_role = "legacy" if legacy else role
    mine = [p for p in processes if p.expected and p.role == serving_role]
    ok = sum(p.ok for p in mine)
    status: RoleStatus = "healthy" if mine and ok == len(mine) else ("partial" if ok else "down")
    return RoleView(role, True, status, len(mine), ok, served_by="legacy" if legacy else None)


def _declared_max_age_s(row: ProcessRow) -> float | None:
    """The MAX_HEARTBEAT_AGE the process itself reported (the view uses the same)."""
    declared = (row.metadata or {}).get("maxHeartbeatAgeMs")
    if isinstance(declared, int) and 0 < declared < 10**9:
        return declared / 1000
    return None


def _sort_key(name: str) -> tuple[int, int, str]:
    role = name.split("-", 1)[0]
    order = {"api": 0, "wwebjs": 1, "meta": 2, "legacy": 3}.get(role, 9)
    return order, _instance_of(name), name


def _instance_of(name: str) -> int:
    tail = name.rsplit("-", 1)[-1] if "-" in name else "0"
    return int(tail) if tail.isdigit() else 0


def _as_role(role: str) -> Role:
    return role if role in ("api", "wwebjs", "meta", "legacy") else "legacy"  # type: ignore[return-value]


async def fetch_overview(db: Database, settings: Settings, *, legacy: bool = False) -> Overview:
    """Read every process_health row and judge it."""
    return build_overview(await db.fetch(SQL.process_rows), settings, legacy=legacy)


async def mark_disabled_roles(db: Database, settings: Settings) -> None:
    """Mark the rows of switched-off roles ``disabled`` (so the view agrees they are not down)."""
    disabled = [role for role in ENGINE_ROLES if not settings.role_enabled(role)]
    if disabled:
        await db.execute(SQL.mark_roles_disabled, disabled)
