"""``bisnesgpt doctor``: the original monitoring checklist as pass/fail checks with evidence.

1. ``processes-online``    every expected process heartbeating and serving (process_health),
                           and every role's /health answering within its timeout
2. ``health-endpoints``    GET /health answers 200 on every enabled role's port
3. ``redis``               the running processes reach Redis (their own /health checks),
                           and so does doctor
4. ``database-pool``       PostgreSQL answers, connections below 90 % of max_connections,
                           and no process reports a failing database check
5. ``recent-errors``       no error/critical process events in the last N minutes
6. ``messages-processing`` no outbound message stuck in queued/sending for M minutes
7. ``queues``              no queue backing up (backlog and oldest waiting job under limits)

Every check runs (a failing dependency fails its own checks, not the command), each
within a timeout; the command's exit status is 0 only when all pass. Doctor's own
environment may differ from the processes' (another ``.env``): the Redis and database
verdicts are what the processes report, and ``servers()`` says which servers doctor and the
processes use, noting where they differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypedDict, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import BisnesgptError, ServiceUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health.overview import Overview, fetch_overview
from bisnesgpt.health.probe import Probe, ReportedCheck, health_urls, probe_all, server_address
from bisnesgpt.health.queues import queue_depths
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queues import ALL_QUEUES

SQL = load_queries("bisnesgpt.health")

CHECK_TIMEOUT = 8.0
PROBE_TIMEOUT = 3.0


class ServersJson(TypedDict):
    """Which servers doctor reads, and which the running processes report using."""

    database: str | None
    redis: str | None
    processDatabase: list[str]
    processRedis: list[str]


class CheckResultJson(TypedDict):
    """A check in ``bisnesgpt doctor --json``."""

    name: str
    ok: bool
    evidence: str
    data: Mapping[str, object]


@dataclass(frozen=True)
class DoctorOptions:
    """The thresholds of the checklist (the command's options)."""

    since_minutes: float = 10.0
    stuck_minutes: float = 5.0
    max_queue_backlog: int = 1000
    max_queue_age_s: float = 300.0
    host: str | None = None
    legacy: bool = False


@dataclass
class CheckResult:
    """One check's verdict, the line of evidence printed for it, and the data behind it."""

    name: str
    ok: bool
    evidence: str
    data: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> CheckResultJson:
        """The JSON form."""
        return {"name": self.name, "ok": self.ok, "evidence": self.evidence, "data": self.data}


class Doctor:
    """Runs the checklist against the given PostgreSQL/Redis URLs (None: not reachable)."""

    def __init__(self, settings: Settings, *, database_url: str | None, redis_url: str | None,
                 options: DoctorOptions, notes: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.options = options
        self.notes = notes
        self.db: Database | None = None
        self.redis: aioredis.Redis | None = None
        self._overview: Overview | None = None
        self._overview_error: str | None = None
        self._probes: dict[str, Probe] = {}

    async def run(self) -> list[CheckResult]:
        """Every check, in the checklist's order (each within CHECK_TIMEOUT)."""
        await self._open()
        try:
            checks: list[tuple[str, Callable[[], Awaitable[CheckResult]]]] = [
                ("processes-online", self.processes_online),
                ("health-endpoints", self.health_endpoints),
                ("redis", self.redis_check),
                ("database-pool", self.database_pool),
                ("recent-errors", self.recent_errors),
                ("messages-processing", self.messages_processing),
                ("queues", self.queues),
            ]
            return [await self._guard(name, check) for name, check in checks]
        finally:
            await self._close()

    async def _guard(self, name: str, check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
        try:
            return await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {CHECK_TIMEOUT:.0f}s")
        except BisnesgptError as exc:
            return CheckResult(name, False, exc.detail)
        except (RedisError, OSError) as exc:
            return CheckResult(name, False, f"{type(exc).__name__}: {exc}")

    async def _open(self) -> None:
        if self.database_url:
            db = Database(self.database_url, max_size=2, min_size=0, application_name="bisnesgpt-doctor",
                          connect_timeout=3.0)
            try:
                await db.open()
                self.db = db
                self._overview = await fetch_overview(db, self.settings, legacy=self.options.legacy)
            except BisnesgptError as exc:
                self._overview_error = exc.detail
                await db.close()
                self.db = None
        else:
            self._overview_error = "; ".join(self.notes) or "no DATABASE_URL"
        if self.redis_url:
            self.redis = redis_client(self.redis_url, name="bisnesgpt:doctor")
        urls = health_urls(self.settings, host=self.options.host, legacy=self.options.legacy)
        self._probes = {str(role): p for role, p in (await probe_all(urls, timeout=PROBE_TIMEOUT)).items()}

    def servers(self) -> ServersJson:
        """Doctor's database and Redis, and those the processes that answered report (``host:port/db``)."""
        return {"database": server_address(self.database_url), "redis": server_address(self.redis_url),
                "processDatabase": self._reported_servers("database"), "processRedis": self._reported_servers("redis")}

    def _reported(self, check: str) -> dict[str, ReportedCheck]:
        found = {role: p.check(check) for role, p in self._probes.items()}
        return {role: c for role, c in found.items() if c is not None}

    def _reported_servers(self, check: str) -> list[str]:
        return sorted({c.server for c in self._reported(check).values() if c.server})

    def _mismatch(self, check: str, mine: str | None) -> str:
        theirs = self._reported_servers(check)
        if not theirs or (mine is not None and theirs == [mine]):
            return ""
        return f"; NOTE doctor reads {mine or 'nothing'}, the processes use {', '.join(theirs)}"

    async def _close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        if self.db is not None:
            await self.db.close()

    def _need_db(self) -> Database:
        if self.db is None:
            raise ServiceUnavailable(f"database unavailable: {self._overview_error}")
        return self.db

    def _need_redis(self) -> aioredis.Redis:
        if self.redis is None:
            raise ServiceUnavailable("Redis not configured and embedded Valkey not running")
        return self.redis

    # --- the checks -------------------------------------------------------------------------

    async def processes_online(self) -> CheckResult:
        """Every expected process heartbeating and healthy (from process_health)."""
        name = "processes-online"
        if self._overview is None:
            return CheckResult(name, False, f"cannot read process_health: {self._overview_error}")
        parts, bad = [], []
        for process in self._overview.expected_processes():
            age = "never" if process.heartbeat_age_s is None else f"{process.heartbeat_age_s:.1f}s ago"
            parts.append(f"{process.process_name} {process.status} (heartbeat {age})")
            if not process.ok:
                bad.append(process.process_name)
        parts += [f"{role} disabled" for role, view in self._overview.roles.items() if view.status == "disabled"]
        silent = [f"{role} /health did not answer ({p.error})"
                  for role, p in self._probes.items() if not p.answered]
        data = {"processes": [p.as_dict() for p in self._overview.expected_processes()],
                "roles": {n: r.as_dict() for n, r in self._overview.roles.items()}, "unanswered": silent}
        return CheckResult(name, not bad and not silent and self._overview.healthy, "; ".join(parts + silent), data)

    async def health_endpoints(self) -> CheckResult:
        """GET /health answers 200 on every enabled role's port."""
        probes = self._probes
        evidence = "; ".join(f"{role} {p.url} {p.summary()}" for role, p in probes.items())
        return CheckResult("health-endpoints", all(p.ok for p in probes.values()), evidence,
                           {"probes": [p.as_dict() for p in probes.values()]})

    async def redis_check(self) -> CheckResult:
        """The running processes reach Redis (their /health says so) and doctor does too (PING, latency, version)."""
        reported = self._reported("redis")
        failing = {role: c for role, c in reported.items() if not c.ok}
        parts = [f"{role}: {'ok' if c.ok else c.detail}" for role, c in reported.items()]
        data: dict[str, object] = {"processes": {role: {"ok": c.ok, "detail": c.detail, "server": c.server}
                                                 for role, c in reported.items()}}
        own_ok = True
        try:
            client = self._need_redis()
            started = time.monotonic()
            await cast(Awaitable[bool], client.ping())
            latency = (time.monotonic() - started) * 1000
            info = await client.info("server")
            version = info.get("valkey_version") or info.get("redis_version") or "?"
            parts.append(f"doctor: PONG in {latency:.1f} ms (server {version})")
            data |= {"latencyMs": round(latency, 2), "version": version}
        except (BisnesgptError, RedisError, OSError) as exc:
            own_ok = False
            parts.append(f"doctor: {getattr(exc, 'detail', None) or f'{type(exc).__name__}: {exc}'}")
        # What the product reaches decides; doctor's own PING only when no process answered.
        ok = not failing if reported else own_ok
        return CheckResult("redis", ok, "; ".join(parts) + self._mismatch("redis", server_address(self.redis_url)),
                           data)

    async def database_pool(self) -> CheckResult:
        """PostgreSQL answers, under 90 % of max_connections, and no process reports a failing database check."""
        db = self._need_db()
        started = time.monotonic()
        row = await db.fetchrow(SQL.connection_counts)
        latency = (time.monotonic() - started) * 1000
        assert row is not None
        used, limit, ours = int(row["used"]), int(row["max"]), int(row["ours"])
        failing = []
        if self._overview is not None:
            failing = [f"{p.process_name}: {p.as_dict()['failing']['database']}"
                       for p in self._overview.expected_processes()
                       if p.ok is False and "database" in p.as_dict()["failing"]]
        failing += [f"{role}: {c.detail}" for role, c in self._reported("database").items() if not c.ok]
        ok = used < 0.9 * limit and not failing
        evidence = (f"answered in {latency:.1f} ms; {used}/{limit} connections ({ours} bisnesgpt)"
                    + (f"; failing in {', '.join(failing)}" if failing else "")
                    + self._mismatch("database", server_address(self.database_url)))
        return CheckResult("database-pool", ok, evidence,
                           {"latencyMs": round(latency, 2), "connections": used, "maxConnections": limit,
                            "bisnesgptConnections": ours, "failing": failing})

    async def recent_errors(self) -> CheckResult:
        """No error or critical process event in the last ``since_minutes``."""
        db = self._need_db()
        window = self.options.since_minutes * 60
        rows = await db.fetch(SQL.recent_problems, float(window))
        latest = [f"{r['process_name']} {r['event_type']} ({r['severity']}, {r['timestamp']:%H:%M:%S})"
                  for r in rows[:5]]
        evidence = (f"{len(rows)} error/critical event(s) in the last {self.options.since_minutes:g} min"
                    + (f": {', '.join(latest)}" if latest else ""))
        return CheckResult("recent-errors", not rows, evidence,
                           {"count": len(rows), "latest": [dict(r) | {"timestamp": r["timestamp"].isoformat()}
                                                           for r in rows[:5]]})

    async def messages_processing(self) -> CheckResult:
        """No outbound message stuck in queued/sending for ``stuck_minutes``."""
        db = self._need_db()
        stuck_after = self.options.stuck_minutes * 60
        row = await db.fetchrow(SQL.stuck_messages, float(stuck_after), float(self.options.since_minutes * 60))
        assert row is not None
        processed = sum(p.messages_processed for p in (self._overview.expected_processes() if self._overview else []))
        evidence = (f"{row['stuck']} outbound message(s) stuck in queued/sending > {self.options.stuck_minutes:g} min; "
                    f"{row['in_flight']} in flight; {row['sent_recently']} sent in the last "
                    f"{self.options.since_minutes:g} min; {processed} jobs processed by the running workers")
        return CheckResult("messages-processing", row["stuck"] == 0, evidence,
                           {"stuck": row["stuck"], "inFlight": row["in_flight"], "sentRecently": row["sent_recently"],
                            "processedByWorkers": processed})

    async def queues(self) -> CheckResult:
        """No queue backing up: backlog and oldest waiting job under their limits."""
        client = self._need_redis()
        depths = await queue_depths(client, [spec.name for spec in ALL_QUEUES])
        parts, bad = [], []
        for name, depth in depths.items():
            age = depth.oldest_waiting_age_s
            parts.append(f"{name} {depth.backlog} waiting" + (f" (oldest {age:.0f}s)" if age is not None else "")
                         + f", {depth.active} active, {depth.failed} failed")
            if depth.backlog > self.options.max_queue_backlog or (age or 0) > self.options.max_queue_age_s:
                bad.append(name)
        evidence = "; ".join(parts) + (f" — backing up: {', '.join(bad)}" if bad else "")
        return CheckResult("queues", not bad, evidence, {n: d.as_dict() for n, d in depths.items()})
