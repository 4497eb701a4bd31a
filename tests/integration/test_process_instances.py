"""process_health per process instance, against real PostgreSQL: takeover of a gone row
(only the current generation shown), a stranger never overwritten, the node watch that
records a dead pid once, a process's own crash, restarts counted from start attempts, the
view's new verdicts, and the api serving (degraded, ready) without Redis."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.health.instance import InstanceIdentity, start_time
from bisnesgpt.health.instances import Heartbeat, InstanceRecord
from bisnesgpt.health.maintenance import Maintenance
from bisnesgpt.health.monitor import HealthMonitor
from bisnesgpt.health.routes import health_router
from bisnesgpt.orchestrator.recorder import Recorder
from tests.support.health import process_context, test_settings
from tests.support.polling import eventually
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

ROW = "SELECT * FROM process_health WHERE process_name = $1 ORDER BY id"


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes to stand for other instances (alive until the test kills them)."""
    spawned: list[subprocess.Popen[bytes]] = []
    yield spawned
    for proc in spawned:
        proc.kill()
        proc.wait(10)


def _sleeper(spawned: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    spawned.append(proc)
    deadline = time.monotonic() + 10
    while start_time(proc.pid) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def _identity(name: str = "meta", *, pid: int | None = None, ppid: int | None = None,
              supervisor: str = "pm2") -> InstanceIdentity:
    me = InstanceIdentity.of_this_process(name, name.split("-", maxsplit=1)[0], host="test-host", orchestrated=False)
    if pid is None:
        return dataclasses.replace(me, supervisor=supervisor, ppid=ppid if ppid is not None else me.ppid)
    return dataclasses.replace(me, pid=pid, ppid=ppid if ppid is not None else me.pid, supervisor=supervisor,
                               started_at=start_time(pid) or 0.0)


def _record(db: Database, identity: InstanceIdentity) -> InstanceRecord:
    return InstanceRecord(db, EventRecorder(db, identity.process_name), identity, test_settings())


def _beat(status: Any = "healthy") -> Heartbeat:
    return Heartbeat(status=status, uptime_s=3, memory_mb=60, cpu_percent=1.0, active_bots=0, messages_processed=0,
                     metadata={}, last_error=None, ready=True)


async def _crash_events(db: Database, name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch("SELECT event_data, severity FROM process_events WHERE process_name = $1 "
                                            "AND event_type = 'crash' ORDER BY id", name)]


async def test_a_new_instance_takes_over_a_gone_row_and_shows_only_its_own_generation(db: Database) -> None:
    # The previous generation crashed: its pid, uptime, memory, restarts and error must not stay.
    await db.execute("""UPDATE process_health SET status = 'crashed', pid = 999999, uptime_seconds = 376,
                        memory_usage_mb = 87, restarts = 7, last_error = 'old error', host = 'elsewhere',
                        last_heartbeat = now() - interval '5 minutes' WHERE process_name = 'meta'""")
    identity = _identity()
    record = _record(db, identity)
    assert await record.claim()
    (row,) = await db.fetch(ROW, "meta")
    assert (row["status"], row["pid"], row["host"], row["uptime_seconds"], row["memory_usage_mb"],
            row["restarts"], row["last_error"], row["instance_key"]) == (
        "starting", identity.pid, "test-host", 0, 0, 0, None, identity.instance_key)
    assert row["supervisor"] == "pm2" and row["node_id"] == identity.node
    assert await db.fetchval("SELECT computed_status FROM v_process_health_overview WHERE process_name = 'meta'") \
        == "starting"
    await record.beat(_beat())
    (row,) = await db.fetch(ROW, "meta")
    assert row["status"] == "healthy" and row["ready_at"] is not None
    assert row["metadata"]["heartbeatIntervalMs"] == 10_000 and row["metadata"]["maxHeartbeatAgeMs"] == 60_000


async def test_a_living_instance_is_never_overwritten_by_a_second_one_of_the_same_name(
        db: Database, sleepers: list[subprocess.Popen[bytes]]) -> None:
    first = _record(db, _identity())
    await first.claim()
    await first.beat(_beat())
    other = _sleeper(sleepers)
    second = _record(db, _identity(pid=other.pid, supervisor="orchestrator"))
    await second.claim()
    await second.beat(_beat())
    rows = await db.fetch(ROW, "meta")
    assert [(r["pid"], r["status"]) for r in rows] == [(first.identity.pid, "healthy"), (other.pid, "healthy")]
    view = await db.fetch("SELECT pid, computed_status FROM v_process_health_overview WHERE process_name = 'meta' "
                          "ORDER BY id")
    assert [(r["pid"], r["computed_status"]) for r in view] == [(first.identity.pid, "healthy"),
                                                                 (other.pid, "healthy")]
    # The second one stops: its row goes (the first speaks for the slot); the first's is untouched.
    await second.beat(_beat("stopped"))
    await second.finish()
    rows = await db.fetch(ROW, "meta")
    assert [(r["pid"], r["status"]) for r in rows] == [(first.identity.pid, "healthy")]
    ended = await db.fetchrow("SELECT outcome FROM process_starts WHERE pid = $1", other.pid)
    assert ended is not None and ended["outcome"] == "stopped"


async def test_the_watch_records_a_dead_process_once_and_leaves_orchestrated_children_alone(
        db: Database, sleepers: list[subprocess.Popen[bytes]]) -> None:
    victim = _sleeper(sleepers)
    dead = _record(db, _identity("meta", pid=victim.pid))
    await dead.claim()
    await dead.beat(_beat())
    child = _sleeper(sleepers)
    orchestrated = _record(db, _identity("wwebjs", pid=child.pid, supervisor="orchestrator"))  # ppid: us, alive
    await orchestrated.claim()
    for proc in (victim, child):
        proc.kill()
        proc.wait(10)

    watcher = _record(db, _identity("api"))
    assert await watcher.watch() == 1
    (row,) = await db.fetch(ROW, "meta")
    assert row["status"] == "crashed" and f"pid {victim.pid} gone without stopping" in row["last_error"]
    events = await _crash_events(db, "meta")
    assert len(events) == 1 and events[0]["severity"] == "error"
    assert events[0]["event_data"] | {"uptimeSeconds": 0, "detail": "", "observedAt": 0} == {
        "pid": victim.pid, "signal": None, "exitCode": None, "uptimeSeconds": 0, "supervisor": "pm2",
        "observedBy": "api", "detail": "", "observedAt": 0}
    assert await db.fetchval("SELECT computed_status FROM v_process_health_overview WHERE process_name = 'meta'") \
        == "down"
    # Seen again (by anyone): nothing more is recorded.
    assert await _record(db, _identity("meta-1")).watch() == 0
    assert len(await _crash_events(db, "meta")) == 1
    # The orchestrator's child is its orchestrator's to record.
    assert (await db.fetch(ROW, "wwebjs"))[0]["status"] == "starting"
    assert await _crash_events(db, "wwebjs") == []


async def test_a_process_dying_of_an_exception_records_its_own_crash(db: Database) -> None:
    record = _record(db, _identity())
    await record.claim()
    await record.crashed("StartupCrash: boom", uptime_s=0.4)
    (row,) = await db.fetch(ROW, "meta")
    assert (row["status"], row["last_error"]) == ("crashed", "StartupCrash: boom")
    start = await db.fetchrow("SELECT outcome, detail, ended_at FROM process_starts WHERE instance_key = $1",
                              record.identity.instance_key)
    assert start is not None and (start["outcome"], start["detail"]) == ("crashed", "StartupCrash: boom")
    (event,) = await _crash_events(db, "meta")
    assert event["severity"] == "error" and event["event_data"]["error"] == "StartupCrash: boom"


async def test_restarts_are_the_earlier_attempts_under_the_same_supervisor(
        db: Database, sleepers: list[subprocess.Popen[bytes]]) -> None:
    counts = []
    for _ in range(3):  # a crash loop: each attempt dies at start, the next one takes the row over
        record = _record(db, _identity(pid=_sleeper(sleepers).pid, ppid=4242))
        await record.claim()
        counts.append(record.restarts)
        await record.crashed("StartupCrash: again", uptime_s=0.1)
    assert counts == [0, 1, 2]
    rows = await db.fetch(ROW, "meta")
    assert [(r["restarts"], r["pid"]) for r in rows] == [(2, record.identity.pid)]
    assert await db.fetchval("SELECT count(*) FROM process_starts WHERE process_name = 'meta' AND ready_at IS NULL "
                             "AND outcome = 'crashed'") == 3
    other = _record(db, _identity(pid=_sleeper(sleepers).pid, ppid=4343))  # another supervisor starts afresh
    await other.claim()
    assert other.restarts == 0


async def test_the_orchestrator_records_an_asked_for_restart_as_restarting(database_url: str, redis_url: str,
                                                                          db: Database) -> None:
    record = _record(db, _identity(supervisor="orchestrator"))
    await record.claim()
    await record.beat(_beat())
    recorder = Recorder(database_url, redis_url, "test-ns")
    recorder.start()
    try:
        recorder.exited("meta", "meta", 0, status="restarting", pid=record.identity.pid, error=None,
                        exited_at=time.time())

        async def _outcome() -> Any:
            return await db.fetchval("SELECT outcome FROM process_starts WHERE instance_key = $1",
                                     record.identity.instance_key)

        assert await eventually(_outcome, what="the attempt ended") == "restarting"
        (row,) = await db.fetch(ROW, "meta")
        assert row["status"] == "restarting"
        assert await db.fetchval("SELECT computed_status FROM v_process_health_overview "
                                 "WHERE process_name = 'meta'") == "down"
    finally:
        recorder.close()


@pytest.mark.parametrize(("status", "age_s", "expected"), [
    ("healthy", 19, "healthy"), ("healthy", 21, "unresponsive"), ("draining", 25, "unresponsive"),
    ("healthy", 61, "down"), ("starting", 1, "starting"), ("restarting", 0, "down"), ("degraded", 1, "degraded"),
])
async def test_the_view_follows_the_declared_interval(db: Database, status: str, age_s: float,
                                                      expected: str) -> None:
    await db.execute("""UPDATE process_health SET status = $1, pid = 1,
                        last_heartbeat = now() - make_interval(secs => $2),
                        metadata = '{"maxHeartbeatAgeMs": 60000, "heartbeatIntervalMs": 10000}'::jsonb
                        WHERE process_name = 'meta'""", status, float(age_s))
    assert await db.fetchval("SELECT computed_status FROM v_process_health_overview "
                             "WHERE process_name = 'meta'") == expected


async def test_the_view_leaves_out_a_stopped_instance_beside_a_living_one(db: Database) -> None:
    await db.execute("SELECT update_process_health('meta', 'healthy', 5, 70, 1, 0, 111)")
    await db.execute("""INSERT INTO process_health (process_name, role, status, pid, last_heartbeat, started_at)
                        VALUES ('meta', 'meta', 'stopped', 222, now(), now())""")
    view = await db.fetch("SELECT pid, computed_status FROM v_process_health_overview WHERE process_name = 'meta'")
    assert [(r["pid"], r["computed_status"]) for r in view] == [(111, "healthy")]


async def test_the_api_without_redis_is_degraded_and_ready_an_engine_unhealthy_and_ready(database_url: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    for role, code, status in (("api", 200, "degraded"), ("meta", 503, "unhealthy")):
        async with process_context(database_url, nowhere, role) as ctx:
            monitor = HealthMonitor(ctx, [])
            got, body = await monitor.body()
            assert (got, body["status"]) == (code, status), body
            assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True
            app = FastAPI()
            app.include_router(health_router(monitor))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                ready = await client.get("/health/ready")
                live = await client.get("/health/live")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            assert live.status_code == 200 and live.json()["status"] == "alive"
            ctx.draining.set()  # a process draining takes no new work
            status_code, ready_body = await monitor.readiness()
            assert status_code == 503 and ready_body["draining"] is True


async def test_maintenance_deletes_start_attempts_older_than_30_days(db: Database) -> None:
    await db.execute("""INSERT INTO process_starts (process_name, role, instance_key, host, node_id, pid, started_at,
                                                    recorded_at, ended_at, outcome) VALUES
        ('meta', 'meta', 'old-ended', 'h', 'n', 1, now(), now() - interval '40 days', now() - interval '31 days',
         'stopped'),
        ('meta', 'meta', 'old-open', 'h', 'n', 2, now(), now() - interval '31 days', NULL, NULL),
        ('meta', 'meta', 'recent', 'h', 'n', 3, now(), now() - interval '29 days', NULL, NULL)""")
    result = await Maintenance(db, EventRecorder(db, "api"), interval=1.0, holder="test").run_once()
    assert result["startsDeleted"] == 2
    assert [r["instance_key"] for r in await db.fetch("SELECT instance_key FROM process_starts")] == ["recent"]
