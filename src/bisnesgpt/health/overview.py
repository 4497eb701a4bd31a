"""Every process at a glance, from ``process_health``: what ``/health/all``, ``bisnesgpt
status`` and ``bisnesgpt doctor`` report.

Which processes *should* exist comes from the settings (``API_INSTANCES``,
``META_INSTANCES``, ``ENABLE_WWEBJS``, ``ENABLE_META``): a role switched off is
``disabled``, never ``down``; a row of an instance that is no longer expected (say
``api-2`` after scaling down) is listed but does not count.

Rows are per process instance (``instances.py``); the rows read are the ones
``v_process_health_overview`` shows: every instance that is not down, else each slot's
newest generation. Two living instances of one name (a second orchestrator on the same
ports, another host) are both listed (``duplicate``); a slot counts as serving when one of
its instances does. Each row is judged by ``statuses.judge`` with the MAX_HEARTBEAT_AGE and
HEARTBEAT_INTERVAL its process declared, as the view judges it in the same query.

A role is ``healthy`` when every expected process is healthy or degraded (serving),
``partial`` when only some are, ``down`` when none; the whole is healthy when every
enabled role is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

import asyncpg

from bisnesgpt.config import ENGINE_ROLES, Role, Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health.statuses import (
    OK_STATUSES,
    HeartbeatMetadata,
    JudgedStatus,
    RoleStatus,
    declared_ms,
    judge,
)
from bisnesgpt.processes.context import process_name_for

__all__ = ["Overview", "ProcessView", "RoleView", "build_overview", "expected_names", "fetch_overview", "judge"]

SQL = load_queries("bisnesgpt.health")


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
    id: int | None = None
    instance_key: str | None = None
    supervisor: str | None = None
    started_at: datetime | None = None
    ready_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Row) -> ProcessRow:
        """Its fields from the row (other columns are ignored; the per-instance ones may be absent)."""
        return cls(**{f.name: row[f.name] if f.default is dataclasses.MISSING else row.get(f.name, f.default)
                      for f in fields(cls)})


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
    instanceKey: str | None
    supervisor: str | None
    startedAt: str | None
    readyAt: str | None
    duplicate: bool


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
    instance_key: str | None = None
    supervisor: str | None = None
    started_at: datetime | None = None
    ready_at: datetime | None = None
    duplicate: bool = False  # another living instance has the same name

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
            "instanceKey": self.instance_key, "supervisor": self.supervisor,
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "readyAt": self.ready_at.isoformat() if self.ready_at else None,
            "duplicate": self.duplicate,
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


def build_overview(rows: Iterable[Row], settings: Settings, *, legacy: bool = False) -> Overview:
    """Judge ``rows`` (``process_rows``) against what the settings say should run."""
    max_age_s = settings.max_heartbeat_age / 1000
    expected = expected_names(settings, legacy=legacy)
    by_name: dict[str, list[ProcessRow]] = {}
    for row in map(ProcessRow.from_row, rows):
        by_name.setdefault(row.process_name, []).append(row)
    processes: list[ProcessView] = []
    for name in sorted(set(by_name) | set(expected), key=_sort_key):
        instances = by_name.get(name) or []
        if not instances:
            processes.append(ProcessView(name, expected[name], _instance_of(name), "down", None, True))
            continue
        views = [_judged(row, settings, expected, legacy=legacy, max_age_s=max_age_s) for row in instances]
        living = sum(view.status not in ("down", "disabled") for view in views)
        processes += [_with_duplicate(view, living > 1) for view in views]
    roles: dict[str, RoleView] = {r: _role_view(r, settings, processes, legacy=legacy) for r in ENGINE_ROLES}
    return Overview(roles, processes, max_age_s)


def _judged(row: ProcessRow, settings: Settings, expected: Mapping[str, Role], *, legacy: bool,
            max_age_s: float) -> ProcessView:
    name = row.process_name
    enabled = legacy or settings.role_enabled(_as_role(str(row.role)))
    status = judge(row.status, row.heartbeat_age, declared_ms(row.metadata, "maxHeartbeatAgeMs") or max_age_s,
                   declared_ms(row.metadata, "heartbeatIntervalMs"))
    if not enabled and name not in expected:
        status = "disabled"
    return ProcessView(
        name, str(row.role), int(row.instance_id), status, row.status, name in expected,
        pid=row.pid, host=row.host, last_heartbeat=row.last_heartbeat,
        heartbeat_age_s=row.heartbeat_age, uptime_s=int(row.uptime_seconds or 0),
        memory_mb=int(row.memory_usage_mb or 0), cpu_percent=float(row.cpu_usage_percent or 0),
        restarts=int(row.restarts or 0), error_count=int(row.error_count or 0),
        last_error=row.last_error, active_bots=int(row.active_bots or 0),
        messages_processed=int(row.messages_processed or 0), view_status=row.view_status,
        metadata=row.metadata or {}, instance_key=row.instance_key, supervisor=row.supervisor,
        started_at=row.started_at, ready_at=row.ready_at,
    )


def _with_duplicate(view: ProcessView, duplicated: bool) -> ProcessView:
    if not duplicated or view.status in ("down", "disabled"):
        return view
    return dataclasses.replace(view, duplicate=True)


def _role_view(role: Role, settings: Settings, processes: list[ProcessView], *, legacy: bool) -> RoleView:
    if not settings.role_enabled(role):
        return RoleView(role, False, "disabled", 0, 0)
    serving_role = "legacy" if legacy else role
    names: dict[str, bool] = {}  # expected process name -> one of its instances serves
    for process in processes:
        if process.expected and process.role == serving_role:
            names[process.process_name] = names.get(process.process_name, False) or process.ok
    ok = sum(names.values())
    status: RoleStatus = "healthy" if names and ok == len(names) else ("partial" if ok else "down")
    return RoleView(role, True, status, len(names), ok, served_by="legacy" if legacy else None)


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
