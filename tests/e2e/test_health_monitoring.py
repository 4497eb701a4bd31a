"""Health across processes without the orchestrator (how PM2 runs them), the legacy
all-in-one process, and ``bisnesgpt doctor`` against a Redis that goes away; a frozen
process is unhealthy within two heartbeats; the api stays ready without Redis; doctor
reports what the processes see, not its own environment; legacy can keep the API's port."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.infra.embedded_redis import EmbeddedRedis
from bisnesgpt.messaging.queues import ALL_QUEUES
from tests.support.orchestrator import ENCRYPTION_KEY, OrchestratorRun, bisnesgpt, get_json, http_status, query
from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port

pytestmark = pytest.mark.e2e


def _role_env(database_url: str, redis_url: str, ports: dict[str, int], **extra: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=database_url, REDIS_URL=redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
                     HOST="127.0.0.1", API_PORT=str(ports["api"]), WWEBJS_PORT=str(ports["wwebjs"]),
                     META_PORT=str(ports["meta"]), PORT=str(ports["legacy"]), **extra)


@pytest.mark.timeout(180)
def test_health_all_turns_503_within_max_heartbeat_age_and_back_and_the_view_agrees(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    """No orchestrator to see the exit: only the heartbeat's age tells (the PM2 case)."""
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port(), "legacy": free_port()}
    env = _role_env(database_url, redis_url, ports, HEARTBEAT_INTERVAL="500", MAX_HEARTBEAT_AGE="3000")
    procs = {role: Proc(["run", role], cwd=tmp_path, env=env, log_name=role) for role in ("api", "wwebjs", "meta")}
    health_all = f"http://127.0.0.1:{ports['api']}/health/all"
    try:
        wait_until(lambda: http_status(health_all) == 200, timeout=60, what="/health/all 200")
        procs["meta"].signal(signal.SIGKILL)
        procs["meta"].wait(10)
        died = time.monotonic()
        body: dict[str, object] = {}

        def _meta_down() -> bool:
            nonlocal body
            code, body = get_json(health_all)
            return code == 503

        wait_until(_meta_down, timeout=10, interval=0.05, what="/health/all 503")
        turned = time.monotonic() - died
        meta = next(p for p in body["processes"] if p["processName"] == "meta")  # type: ignore[union-attr]
        print(f"\n[measured] kill -9 meta (no orchestrator): /health/all 503 after {turned:.2f}s "
              f"(MAX_HEARTBEAT_AGE 3s, heartbeat every 0.5s; last heartbeat {meta['secondsSinceHeartbeat']}s old)")
        assert turned <= 3.0 + 2.0  # within MAX_HEARTBEAT_AGE (+ polling and scheduling slack)
        assert body["roles"]["meta"]["status"] == "down"  # type: ignore[index]
        assert body["roles"]["api"]["status"] == "healthy"  # type: ignore[index]
        assert body["roles"]["wwebjs"]["status"] == "healthy"  # type: ignore[index]
        assert meta["status"] == "down" and meta["viewStatus"] == "down"  # the view agrees, same query

        procs["meta"] = Proc(["run", "meta"], cwd=tmp_path, env=env, log_name="meta-2")
        wait_until(lambda: http_status(health_all) == 200, timeout=60, what="/health/all 200 again")
        print(f"[measured] meta restarted by hand: /health/all 200 after {time.monotonic() - died:.2f}s")
        view = query(database_url, "SELECT computed_status FROM v_process_health_overview "
                                   "WHERE process_name = 'meta'")[0]["computed_status"]
        assert view == "healthy"
        for proc in procs.values():
            proc.signal(signal.SIGTERM)
        assert all(proc.wait(30) == 0 for proc in procs.values())
    finally:
        for proc in procs.values():
            proc.kill_tree()


@pytest.mark.timeout(180)
def test_legacy_runs_every_role_in_one_process_on_port(tmp_path: Path, database_url: str, redis_url: str) -> None:
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port(), "legacy": free_port()}
    env = _role_env(database_url, redis_url, ports, HEARTBEAT_INTERVAL="500")
    legacy = Proc(["run", "legacy"], cwd=tmp_path, env=env, log_name="legacy")
    base = f"http://127.0.0.1:{ports['legacy']}"
    try:
        wait_until(lambda: http_status(f"{base}/health/all") == 200, timeout=60, what="legacy /health/all 200")
        code, health = get_json(f"{base}/health")
        assert code == 200 and health["processName"] == "legacy" and health["role"] == "legacy"
        assert http_status(f"{base}/api/health") == 200
        assert "bisnesgpt_process_up" in __import__("httpx").get(f"{base}/metrics").text
        code, body = get_json(f"{base}/health/all")
        assert [p["processName"] for p in body["processes"] if p["expected"]] == ["legacy"]
        assert {r: v.get("servedBy") for r, v in body["roles"].items()} == {"api": "legacy", "wwebjs": "legacy",
                                                                            "meta": "legacy"}
        # Nothing listens on the role ports: legacy serves everything on PORT only.
        assert all(http_status(f"http://127.0.0.1:{ports[r]}/health") is None for r in ("api", "wwebjs", "meta"))
        # Every role's components run here: the queue depth it reports covers all queues.
        all_queues = {spec.name for spec in ALL_QUEUES}
        depths_sql = ("SELECT DISTINCT metadata->>'queue' AS queue FROM process_metrics "
                      "WHERE process_name = 'legacy' AND metric_name = 'queue_depth'")
        wait_until(lambda: {row["queue"] for row in query(database_url, depths_sql)} == all_queues, timeout=30,
                   what=f"legacy reports the depth of {sorted(all_queues)}")
        doctor = bisnesgpt(["doctor", "--legacy", "--json"], cwd=tmp_path, env=env)
        report = json.loads(doctor.stdout)
        assert doctor.returncode == 0, json.dumps(report, indent=1)
        legacy.signal(signal.SIGTERM)
        assert legacy.wait(30) == 0
    finally:
        legacy.kill_tree()
    stop = query(database_url, "SELECT event_data FROM process_events WHERE process_name = 'legacy' "
                               "AND event_type = 'stop'")
    assert stop and stop[0]["event_data"]["signals"] == ["SIGTERM"]


@pytest.mark.timeout(240)
def test_doctor_fails_naming_redis_when_it_stops_and_passes_when_all_is_well(
        tmp_path: Path, database_url: str) -> None:
    valkey = EmbeddedRedis(tmp_path / "valkey", port=free_port())  # our own, to stop at will
    handle = valkey.ensure()
    workdir = tmp_path / "run"
    workdir.mkdir()
    try:
        with OrchestratorRun(workdir, database_url=database_url, redis_url=handle.url) as run:
            run.wait_healthy(["api", "wwebjs", "meta"])
            passing = bisnesgpt(["doctor"], cwd=workdir, env=run.env | {"COLUMNS": "300"})
            print(f"\n{passing.stdout}")
            assert passing.returncode == 0, passing.stdout + passing.stderr
            assert passing.stdout.count("PASS") == 7 and "7/7 checks passed" in passing.stdout

            valkey.stop()
            failing = bisnesgpt(["doctor", "--json"], cwd=workdir, env=run.env)
            report = json.loads(failing.stdout)
            checks = {c["name"]: c for c in report["checks"]}
            print("\n".join(f"{'PASS' if c['ok'] else 'FAIL'} {n}: {c['evidence']}" for n, c in checks.items()))
            assert failing.returncode == 1 and report["ok"] is False
            assert checks["redis"]["ok"] is False
            assert "connect" in checks["redis"]["evidence"].lower()
            assert checks["queues"]["ok"] is False
            assert checks["database-pool"]["ok"] is True
            text = bisnesgpt(["doctor"], cwd=workdir, env=run.env | {"COLUMNS": "300"})
            assert text.returncode == 1
            assert any(line.startswith("FAIL") and " redis " in line for line in text.stdout.splitlines())

            # Redis back on the same port: the processes reconnect, the doctor passes again.
            handle = valkey.ensure()
            wait_until(lambda: bisnesgpt(["doctor"], cwd=workdir, env=run.env).returncode == 0, timeout=90,
                       interval=1.0, what="doctor passing after Redis is back")
            code, _ = run.stop()
            assert code == 0
            run.assert_nothing_left()
    finally:
        valkey.stop()


def _process(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in body.get("processes", []) if p["processName"] == name)


@pytest.mark.timeout(240)
def test_a_frozen_process_makes_health_all_503_within_20_seconds_and_doctor_fails_it(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    """The default timings (HEARTBEAT_INTERVAL 10 s, MAX_HEARTBEAT_AGE 60 s) and no orchestrator
    to kill the frozen process: two missed heartbeats are enough."""
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port(), "legacy": free_port()}
    env = _role_env(database_url, redis_url, ports)
    procs = {role: Proc(["run", role], cwd=tmp_path, env=env, log_name=role) for role in ("api", "wwebjs", "meta")}
    health_all = f"http://127.0.0.1:{ports['api']}/health/all"
    try:
        wait_until(lambda: http_status(health_all) == 200, timeout=60, what="/health/all 200")
        os.kill(procs["wwebjs"].pid, signal.SIGSTOP)
        frozen = time.monotonic()
        body: dict[str, Any] = {}

        def _unresponsive() -> bool:
            nonlocal body
            code, body = get_json(health_all)
            return code == 503 and _process(body, "wwebjs")["status"] == "unresponsive"

        wait_until(_unresponsive, timeout=25, interval=0.25, what="/health/all 503 with wwebjs unresponsive")
        turned = time.monotonic() - frozen
        wwebjs = _process(body, "wwebjs")
        print(f"\n[measured] SIGSTOP wwebjs (heartbeat every 10 s): /health/all 503 after {turned:.2f}s "
              f"(last heartbeat {wwebjs['secondsSinceHeartbeat']}s old)")
        assert turned <= 20.0 + 2.0  # two intervals (+ polling and scheduling slack)
        assert body["roles"]["wwebjs"]["status"] == "down" and body["roles"]["api"]["status"] == "healthy"
        assert wwebjs["viewStatus"] == "unresponsive"  # the view agrees, in the same query
        doctor = bisnesgpt(["doctor", "--json"], cwd=tmp_path, env=env)
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert doctor.returncode == 1 and checks["processes-online"]["ok"] is False
        assert "wwebjs unresponsive" in checks["processes-online"]["evidence"]
        assert "wwebjs /health did not answer" in checks["processes-online"]["evidence"]

        os.kill(procs["wwebjs"].pid, signal.SIGCONT)
        wait_until(lambda: http_status(health_all) == 200, timeout=30, what="/health/all 200 after SIGCONT")
        for proc in procs.values():
            proc.signal(signal.SIGTERM)
        assert all(proc.wait(30) == 0 for proc in procs.values())
    finally:
        for proc in procs.values():
            if proc.popen.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill_tree()


@pytest.mark.timeout(240)
def test_the_api_stays_ready_without_redis_and_doctor_reports_what_the_processes_see(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    valkey = EmbeddedRedis(tmp_path / "valkey", port=free_port())  # the processes' Redis, to stop at will
    handle = valkey.ensure()
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port(), "legacy": free_port()}
    env = _role_env(database_url, handle.url, ports, HEARTBEAT_INTERVAL="500")
    # doctor run with another environment (another .env): its REDIS_URL names a Redis that answers.
    doctor_env = env | {"REDIS_URL": redis_url}
    procs = {role: Proc(["run", role], cwd=tmp_path, env=env, log_name=role) for role in ("api", "wwebjs", "meta")}
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_until(lambda: http_status(f"{api}/health/all") == 200, timeout=60, what="/health/all 200")
        report = json.loads(bisnesgpt(["doctor", "--json"], cwd=tmp_path, env=doctor_env).stdout)
        redis_check = next(c for c in report["checks"] if c["name"] == "redis")
        assert redis_check["ok"] is True and "NOTE doctor reads" in redis_check["evidence"]
        assert report["servers"]["redis"] != report["servers"]["processRedis"][0]
        assert report["servers"]["processRedis"] == [f"127.0.0.1:{handle.url.rsplit(':', 1)[1]}"]

        valkey.stop()
        health: dict[str, Any] = {}

        def _degraded() -> bool:
            nonlocal health
            code, health = get_json(f"{api}/health")
            return code == 200 and health.get("status") == "degraded"

        wait_until(_degraded, timeout=30, what="the api degraded (200) without Redis")
        assert health["checks"]["redis"]["ok"] is False and health["checks"]["database"]["ok"] is True
        code, ready = get_json(f"{api}/health/ready")
        assert code == 200 and ready["status"] == "ready"
        assert get_json(f"{api}/health/live")[0] == 200
        assert http_status(f"http://127.0.0.1:{ports['meta']}/health") == 503  # an engine needs Redis
        assert get_json(f"http://127.0.0.1:{ports['meta']}/health/ready")[0] == 200

        # doctor's own Redis answers, but the product's does not: the product's view decides.
        failing = bisnesgpt(["doctor", "--json"], cwd=tmp_path, env=doctor_env)
        checks = {c["name"]: c for c in json.loads(failing.stdout)["checks"]}
        print(f"\nredis: {checks['redis']['evidence']}")
        assert failing.returncode == 1 and checks["redis"]["ok"] is False
        assert "connect" in checks["redis"]["evidence"].lower() and "doctor: PONG" in checks["redis"]["evidence"]
        text = bisnesgpt(["doctor"], cwd=tmp_path, env=doctor_env | {"COLUMNS": "300"})
        first = text.stdout.splitlines()[0]
        assert first.startswith("looking at: database") and handle.url.rsplit(":", 1)[1].split("/")[0] in first
    finally:
        for proc in procs.values():
            proc.kill_tree()
        valkey.stop()


@pytest.mark.timeout(180)
def test_legacy_can_serve_the_api_on_api_port_too(tmp_path: Path, database_url: str, redis_url: str) -> None:
    """A rollback to legacy moves the API from API_PORT to PORT, unless LEGACY_SERVE_API_PORT keeps both."""
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port(), "legacy": free_port()}
    env = _role_env(database_url, redis_url, ports, HEARTBEAT_INTERVAL="500", LEGACY_SERVE_API_PORT="true")
    legacy = Proc(["run", "legacy"], cwd=tmp_path, env=env, log_name="legacy")
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{ports['legacy']}/health/all") == 200, timeout=60,
                   what="legacy /health/all 200")
        for port in (ports["legacy"], ports["api"]):
            code, health = get_json(f"http://127.0.0.1:{port}/api/health")
            assert code == 200 and health["processName"] == "legacy", port
        assert http_status(f"http://127.0.0.1:{ports['api']}/health/all") == 200
        assert all(http_status(f"http://127.0.0.1:{ports[r]}/health") is None for r in ("wwebjs", "meta"))
        legacy.signal(signal.SIGTERM)
        assert legacy.wait(30) == 0
    finally:
        legacy.kill_tree()
