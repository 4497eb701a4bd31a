"""Health across processes without the orchestrator (how PM2 runs them), the legacy
all-in-one process, and ``bisnesgpt doctor`` against a Redis that goes away."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from bisnesgpt.infra.embedded_redis import EmbeddedRedis
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
        wait_until(lambda: len(query(database_url, "SELECT DISTINCT metadata->>'queue' FROM process_metrics "
                                                   "WHERE process_name = 'legacy' AND metric_name = 'queue_depth'"))
                   == 4, timeout=30)
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
