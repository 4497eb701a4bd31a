"""Health checks, heartbeats, the maintenance lease, the orchestrator's recorder, the
status-aware view and the Redis coordinator — against real PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from bisnesgpt.coordination.channels import BOT_EVENT, PROCESS_SHUTDOWN, PROCESS_STATUS, channel_name
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.db.pool import Database
from bisnesgpt.health.component import MaintenanceComponent
from bisnesgpt.health.monitor import HealthMonitor
from bisnesgpt.health.queues import queue_depths
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import WWEBJS
from bisnesgpt.orchestrator.recorder import Recorder
from bisnesgpt.processes.component import HealthReporter
from tests.support.health import process_context
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


class _WorkerComponent(HealthReporter):
    name = "test-worker"

    def __init__(self, worker: QueueWorker) -> None:
        self.worker = worker

    def queue_workers(self) -> Sequence[QueueWorker]:
        return (self.worker,)


async def test_health_checks_each_queue_consumer(database_url: str, redis_url: str) -> None:
    async def processor(job: Any, token: str) -> None:
        return None

    async with process_context(database_url, redis_url, "wwebjs") as ctx:
        worker = QueueWorker(redis_url, WWEBJS, processor)
        await worker.start()
        monitor = HealthMonitor(ctx, [_WorkerComponent(worker)])
        status, body = await monitor.body()
        assert status == 200, body
        assert body["checks"]["queue:wwebjs-messages"] == {"ok": True, "detail": "consumer running",
                                                           "activeJobs": 0, "lastError": None}
        assert {"processName", "pid", "status", "uptime", "memory", "lastHeartbeat", "errorCount",
                "activeBots"} <= set(body)
        await worker.close(timeout=5)
        status, body = await monitor.body()
        assert status == 503 and body["status"] == "unhealthy"
        assert body["checks"]["queue:wwebjs-messages"]["ok"] is False
        assert body["checks"]["queue:wwebjs-messages"]["detail"] == "consumer stopped"


async def test_heartbeat_writes_health_row_metrics_and_queue_depth(database_url: str, redis_url: str,
                                                                   db: Database) -> None:
    async with process_context(database_url, redis_url, "wwebjs", max_heartbeat_age=4000) as ctx:
        for n in range(3):
            await ctx.queues.add(WWEBJS, f"job-{n}", {"messageId": f"m{n}"})
        monitor = HealthMonitor(ctx, [])
        await monitor.beat()
        row = await db.fetchrow("SELECT status, pid, metadata FROM process_health WHERE process_name = 'wwebjs'")
        assert row is not None and row["status"] == "healthy" and row["pid"] == ctx.pid
        assert row["metadata"]["maxHeartbeatAgeMs"] == 4000
        assert row["metadata"]["queueDepth"] == {"wwebjs-messages": 3}
        metrics = {r["metric_name"]: r for r in await db.fetch(
            "SELECT metric_name, metric_value, metadata FROM process_metrics WHERE process_name = 'wwebjs'")}
        assert {"rss_mb", "cpu_percent", "event_loop_lag_ms", "messages_processed", "active_bots",
                "queue_depth"} <= set(metrics)
        assert metrics["rss_mb"]["metric_value"] > 10
        assert metrics["queue_depth"]["metric_value"] == 3
        assert metrics["queue_depth"]["metadata"] == {"queue": "wwebjs-messages"}

        depths = await queue_depths(ctx.redis, ["wwebjs-messages", "meta-messages"])
        assert depths["wwebjs-messages"].waiting == 3 and depths["wwebjs-messages"].backlog == 3
        assert depths["wwebjs-messages"].oldest_waiting_age_s is not None
        assert 0 <= depths["wwebjs-messages"].oldest_waiting_age_s < 60
        assert depths["meta-messages"].backlog == 0 and depths["meta-messages"].oldest_waiting_age_s is None


async def test_maintenance_runs_in_exactly_one_process_and_fails_over(database_url: str, redis_url: str,
                                                                      db: Database) -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme')")
    await db.execute("""INSERT INTO process_metrics (process_name, metric_name, metric_value, timestamp)
                        VALUES ('api', 'old', 1, now() - interval '8 days'), ('api', 'new', 1, now())""")
    await db.execute("""INSERT INTO idempotency_keys (company_id, key, request_hash, method, path, expires_at)
                        VALUES ('acme', 'gone', 'h', 'POST', '/x', now() - interval '1 minute'),
                               ('acme', 'kept', 'h', 'POST', '/x', now() + interval '1 hour')""")
    async with process_context(database_url, redis_url, "api", cleanup_interval=400) as first, \
            process_context(database_url, redis_url, "api", instance_id=1, cleanup_interval=400) as second:
        a, b = MaintenanceComponent(first), MaintenanceComponent(second)
        await a.start()
        await b.start()

        async def runs() -> list[dict[str, Any]]:
            return [dict(r) for r in await db.fetch(
                "SELECT event_data, timestamp FROM process_events WHERE event_type = 'maintenance' ORDER BY id")]

        await eventually(lambda: _count(runs, 3), timeout=20, what="three maintenance runs")
        done = await runs()
        holders = {r["event_data"]["holder"] for r in done}
        assert len(holders) == 1, holders  # one process at a time, never both
        assert a.runs + b.runs == len(done) and (a.runs == 0 or b.runs == 0)
        gaps = [(y["timestamp"] - x["timestamp"]).total_seconds() for x, y in itertools.pairwise(done)]
        assert all(gap >= 0.3 for gap in gaps), gaps  # on the schedule, not every tick of both
        assert done[0]["event_data"]["metricsDeleted"] == 1
        assert done[0]["event_data"]["idempotencyKeysDeleted"] == 1
        assert [r["metric_name"] for r in await db.fetch("SELECT metric_name FROM process_metrics "
                                                         "WHERE process_name = 'api'")] == ["new"]
        assert [r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys")] == ["kept"]

        holder, other = (a, b) if a.runs else (b, a)
        await holder.stop()  # releases the lease: the other one takes over the schedule
        before = other.runs
        await eventually(lambda: other.runs > before, timeout=20, what="the other process to take over")
        await other.stop()


async def _count(runs: Any, n: int) -> bool:
    return len(await runs()) >= n


async def test_recorder_marks_exits_without_overwriting_a_newer_child(database_url: str, redis_url: str,
                                                                      db: Database) -> None:
    client = redis_client(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    await pubsub.subscribe(channel_name(namespace, PROCESS_STATUS))
    recorder = Recorder(database_url, redis_url, namespace)
    recorder.start()
    try:
        await db.execute("SELECT update_process_health('meta', 'healthy', 5, 70, 1, 0, 111)")
        recorder.exited("meta", "meta", 0, status="crashed", pid=111, error="killed by SIGKILL",
                        exited_at=time.time())
        recorder.event("meta", "crash", {"pid": 111, "signal": "SIGKILL"}, "error")
        recorder.restarts("meta", "meta", 0, 1)
        recorder.publish(PROCESS_STATUS, {"processName": "meta", "status": "restarting"})

        async def status() -> Any:
            return await db.fetchrow("SELECT status, restarts, last_error FROM process_health "
                                     "WHERE process_name = 'meta'")

        await eventually(lambda: _matches(status, {"status": "crashed", "restarts": 1,
                                               "last_error": "killed by SIGKILL"}), what="meta crashed")
        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:  # the subscribe reply reads as None
            message = await pubsub.get_message(timeout=1)
        assert message is not None and json.loads(message["data"])["status"] == "restarting"
        assert json.loads(message["data"])["namespace"] == namespace
        event = await db.fetchrow("SELECT severity, event_data FROM process_events WHERE event_type = 'crash'")
        assert event is not None and event["severity"] == "error" and event["event_data"]["pid"] == 111

        # The replacement (pid 222) heartbeated after the old one exited: a late mark of the
        # old pid must not turn it back to 'crashed'.
        exited_before = time.time() - 1
        await db.execute("SELECT update_process_health('meta', 'healthy', 1, 70, 1, 0, 222)")
        recorder.exited("meta", "meta", 0, status="crashed", pid=111, error=None, exited_at=exited_before)
        recorder.event("meta", "marker", {})
        await eventually(lambda: _has_event(db, "marker"), what="recorder caught up")
        row = await status()
        assert row["status"] == "healthy"
        # A child that never heartbeated still gets a row.
        recorder.exited("api-3", "api", 3, status="errored", pid=333, error="given up", exited_at=time.time())
        recorder.event("api-3", "marker2", {})
        await eventually(lambda: _has_event(db, "marker2"), what="recorder caught up again")
        row3 = await db.fetchrow("SELECT role, instance_id, status FROM process_health WHERE process_name = 'api-3'")
        assert row3 is not None and dict(row3) == {"role": "api", "instance_id": 3, "status": "errored"}
    finally:
        recorder.close()
        await pubsub.aclose()
        await client.aclose()


async def _matches(fetch: Any, expected: dict[str, Any]) -> bool:
    row = await fetch()
    return row is not None and {k: row[k] for k in expected} == expected


async def _has_event(db: Database, event_type: str) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM process_events WHERE event_type = $1", event_type))


@pytest.mark.parametrize(("status", "age_s", "declared_ms", "expected"), [
    ("crashed", 0, None, "down"), ("stopped", 0, None, "down"), ("errored", 0, None, "down"),
    ("disabled", 3600, None, "disabled"), ("error", 1, None, "degraded"), ("draining", 1, None, "degraded"),
    ("healthy", 1, 4000, "healthy"), ("healthy", 2.5, 4000, "degraded"), ("healthy", 4.5, 4000, "down"),
    ("healthy", 45, None, "degraded"), ("healthy", 61, None, "down"),
])
async def test_the_view_follows_known_status_and_the_declared_heartbeat_age(
        db: Database, status: str, age_s: float, declared_ms: int | None, expected: str) -> None:
    metadata = {"maxHeartbeatAgeMs": declared_ms} if declared_ms else {}
    await db.execute("""UPDATE process_health SET status = $1, last_heartbeat = now() - make_interval(secs => $2),
                        metadata = $3::jsonb WHERE process_name = 'meta'""", status, float(age_s), metadata)
    assert await db.fetchval("SELECT computed_status FROM v_process_health_overview "
                             "WHERE process_name = 'meta'") == expected


async def test_coordinator_tracks_peers_and_obeys_targeted_shutdown(redis_url: str) -> None:
    # Pub/sub channels are per Redis *server*, not per logical db: everything here carries a
    # host and names no real process can have, so concurrent test runs never see each other.
    host, peer, company = (f"test-{uuid.uuid4().hex[:8]}" for _ in range(3))
    peers: dict[str, dict[str, Any]] = {}
    shutdowns: list[str] = []
    bot_events: list[dict[str, Any]] = []
    namespace = f"ns-{host}"
    coordinator = Coordinator(redis_url, namespace=namespace, process_name="meta-1", role="meta", host=host,
                              peers=peers, on_shutdown=shutdowns.append)
    coordinator.on(BOT_EVENT, lambda event: bot_events.append(event) if event.get("companyId") == company else None)
    coordinator.start()
    client = redis_client(redis_url)
    try:
        await eventually(lambda: coordinator.connected, what="coordinator subscribed")
        def mine(channel: str) -> str:
            return channel_name(namespace, channel)

        await client.publish(mine(PROCESS_STATUS), json.dumps({"processName": peer, "status": "ready", "pid": 7}))
        await client.publish(mine(PROCESS_STATUS), json.dumps({"processName": "meta-1", "status": "ready"}))  # itself
        # The original channel names (another deployment's, or the Node server's): not heard.
        await client.publish(BOT_EVENT, json.dumps({"companyId": company, "event": "unprefixed"}))
        await client.publish(PROCESS_SHUTDOWN, json.dumps({"targets": ["all"], "host": host, "reason": "unprefixed"}))
        await client.publish(mine(BOT_EVENT), json.dumps({"companyId": company, "event": "qr"}))
        await client.publish(mine(PROCESS_SHUTDOWN), json.dumps({"targets": ["api"], "host": host,
                                                                 "reason": "not me"}))
        # Another deployment on the same server (other logical db, other namespace): ignored.
        await client.publish(mine(PROCESS_SHUTDOWN), json.dumps({"targets": ["all"], "host": host, "redisDb": 99,
                                                                 "reason": "other deployment"}))
        await client.publish(mine(PROCESS_SHUTDOWN), json.dumps({"targets": ["all"], "host": host,
                                                                 "namespace": "other", "reason": "other ns"}))
        await client.publish(mine(PROCESS_SHUTDOWN), json.dumps({"targets": ["meta"], "host": host,
                                                                 "reason": "rolling"}))
        await eventually(lambda: shutdowns and bot_events and peer in peers, what="messages delivered")
        assert shutdowns == ["rolling"]
        assert bot_events == [{"companyId": company, "event": "qr"}]
        assert peers[peer]["status"] == "ready" and peers[peer]["redis"]["pid"] == 7
        assert "meta-1" not in peers
    finally:
        await coordinator.stop()
        await client.aclose()
