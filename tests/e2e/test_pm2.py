"""``pm2 start ecosystem.config.js`` brings the three roles up healthy, and health tells the
truth under PM2 too: a kill -9 is down and recorded within seconds, a crash loop leaves its
events and only its own generation (runs when pm2 is on PATH; CI installs it with
``npm i -g pm2``). PM2 gets its own PM2_HOME in a temporary directory and is always stopped
with ``pm2 kill``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.orchestrator import ENCRYPTION_KEY, bisnesgpt, get_json, http_status, query
from tests.support.polling import wait_until
from tests.support.procs import clean_env, free_port, processes_under

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("pm2") is None, reason="pm2 is not installed (npm i -g pm2)"),
]

REPO = Path(__file__).resolve().parents[2]


def _pm2(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pm2", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _pm2_env(tmp_path: Path, database_url: str, redis_url: str, ports: dict[str, int], **extra: str) -> dict[
        str, str]:
    env = clean_env(
        PM2_HOME=str(tmp_path / "pm2"), DATABASE_URL=database_url, REDIS_URL=redis_url,
        ENCRYPTION_KEY=ENCRYPTION_KEY, HOST="127.0.0.1", API_PORT=str(ports["api"]),
        WWEBJS_PORT=str(ports["wwebjs"]), META_PORT=str(ports["meta"]), LOG_DIR=str(tmp_path / "logs"), **extra,
    )
    if not (REPO / ".venv" / "bin" / "python").exists():
        env["BISNESGPT_PYTHON"] = sys.executable
    return env


@contextlib.contextmanager
def _pm2_session(tmp_path: Path, env: dict[str, str], pids: list[int]) -> Iterator[None]:
    """Whatever happens, ``pm2 kill`` at the end, and nothing left running (``pids``: the apps' pids seen)."""
    try:
        yield
    finally:
        daemon_pid = _daemon_pid(Path(env["PM2_HOME"]))
        _pm2(["kill"], env, timeout=60)
        for pid in [*pids, *([daemon_pid] if daemon_pid else [])]:
            wait_until(lambda pid=pid: not _alive(pid), timeout=20, what=f"pid {pid} gone")
        left = [p for p in processes_under(tmp_path) if _alive(p.pid)]
        for proc in left:
            os.kill(proc.pid, signal.SIGKILL)
        assert not left, [p.cmdline() for p in left]


def _app_pids(env: dict[str, str], name: str) -> list[int]:
    listing = json.loads(_pm2(["jlist"], env).stdout or "[]")
    return [app["pid"] for app in listing if app["name"] == name and app["pid"]]


def _process(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in body.get("processes", []) if p["processName"] == name)


@pytest.mark.timeout(240)
def test_pm2_starts_the_three_roles_healthy(tmp_path: Path, database_url: str, redis_url: str) -> None:
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port()}
    env = _pm2_env(tmp_path, database_url, redis_url, ports, API_INSTANCES="2", HEARTBEAT_INTERVAL="500")
    pids: list[int] = []
    with _pm2_session(tmp_path, env, pids):
        began = time.monotonic()
        started = _pm2(["start", "ecosystem.config.js", "--only", "bisnesgpt-api,bisnesgpt-wwebjs,bisnesgpt-meta"],
                       env)
        assert started.returncode == 0, started.stdout + started.stderr

        health_all = f"http://127.0.0.1:{ports['api']}/health/all"
        body: dict[str, object] = {}

        def _healthy() -> bool:
            nonlocal body
            code, body = get_json(health_all)
            return code == 200
        wait_until(_healthy, timeout=90, interval=0.25, what="/health/all 200 under pm2")
        print(f"\n[measured] pm2 start to /health/all 200 (api x2, wwebjs, meta): {time.monotonic() - began:.2f}s")
        processes = {p["processName"]: p for p in body["processes"] if p["expected"]}  # type: ignore[union-attr]
        assert set(processes) == {"api", "api-1", "wwebjs", "meta"}
        assert all(p["status"] == "healthy" for p in processes.values())
        for role, port in ports.items():
            assert http_status(f"http://127.0.0.1:{port}/health") == 200, role

        listing = json.loads(_pm2(["jlist"], env).stdout)
        apps = sorted((app["name"], app["pm2_env"]["status"]) for app in listing)
        assert apps == [("bisnesgpt-api", "online"), ("bisnesgpt-api", "online"), ("bisnesgpt-meta", "online"),
                        ("bisnesgpt-wwebjs", "online")]
        pids += [app["pid"] for app in listing]
        assert sorted(pids) == sorted(p["pid"] for p in processes.values())
        # PM2 wrote the per-role logs with its date prefix.
        assert "serving on" in (tmp_path / "logs" / "meta-out.log").read_text()

        # PM2 stops a role with SIGINT: our graceful path.
        stopped = _pm2(["stop", "bisnesgpt-meta"], env)
        assert stopped.returncode == 0
        meta_stopped = f"event stop {{'pid': {processes['meta']['pid']}, 'signals': ['SIGINT']"
        wait_until(lambda: meta_stopped in (tmp_path / "logs" / "meta-out.log").read_text(), timeout=30)


@pytest.mark.timeout(240)
def test_kill_9_under_pm2_is_down_and_recorded_within_5_seconds(tmp_path: Path, database_url: str,
                                                                  redis_url: str) -> None:
    """The default timings (heartbeat every 10 s, MAX_HEARTBEAT_AGE 60 s): no heartbeat age
    tells a kill -9 this fast, only the processes of the same node judging by pid."""
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port()}
    env = _pm2_env(tmp_path, database_url, redis_url, ports)
    pids: list[int] = []
    with _pm2_session(tmp_path, env, pids):
        started = _pm2(["start", "ecosystem.config.js", "--only", "bisnesgpt-api,bisnesgpt-wwebjs,bisnesgpt-meta"],
                       env)
        assert started.returncode == 0, started.stdout + started.stderr
        health_all = f"http://127.0.0.1:{ports['api']}/health/all"
        wait_until(lambda: http_status(health_all) == 200, timeout=90, interval=0.25, what="/health/all 200")
        pids += _app_pids(env, "bisnesgpt-meta")
        (old,) = pids
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        body: dict[str, Any] = {}

        def _meta_down() -> bool:
            nonlocal body
            code, body = get_json(health_all)
            return code == 503 and _process(body, "meta")["status"] == "down"

        wait_until(_meta_down, timeout=10, interval=0.05, what="/health/all 503 with meta down")
        down_after = time.monotonic() - killed
        crash = wait_until(lambda: query(database_url, "SELECT event_data, severity FROM process_events "
                                                       "WHERE process_name = 'meta' AND event_type = 'crash'"),
                           timeout=10, interval=0.05, what="a crash event for meta")
        recorded_after = time.monotonic() - killed
        print(f"\n[measured] kill -9 meta under PM2 (heartbeat 10 s): /health/all 503 after {down_after:.2f}s, "
              f"crash event after {recorded_after:.2f}s")
        assert down_after <= 5.0 and recorded_after <= 5.0
        assert crash[0]["severity"] == "error" and crash[0]["event_data"]["pid"] == old
        assert _process(body, "meta")["pid"] == old and body["roles"]["api"]["status"] == "healthy"
        view = query(database_url, "SELECT computed_status FROM v_process_health_overview WHERE process_name = 'meta'")
        assert [r["computed_status"] for r in view] in (["down"], ["starting"], ["healthy"])  # PM2 restarts it

        # PM2 restarts it: the new generation takes the row over, counted as PM2's first restart.
        wait_until(lambda: http_status(health_all) == 200, timeout=60, interval=0.25, what="/health/all 200 again")
        new = _app_pids(env, "bisnesgpt-meta")
        pids += new
        row = query(database_url, "SELECT pid, restarts, status FROM process_health WHERE process_name = 'meta'")
        assert row == [{"pid": new[0], "restarts": 1, "status": "healthy"}]
        assert len(query(database_url, "SELECT 1 FROM process_events WHERE process_name = 'meta' "
                                       "AND event_type = 'crash'")) == 1


@pytest.mark.timeout(240)
def test_a_crash_loop_under_pm2_leaves_events_fails_doctor_and_shows_only_its_generation(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    # The previous generation ran under an orchestrator minutes ago: its pid, uptime, memory,
    # restart count and error must not be shown for the processes PM2 now starts.
    query(database_url, """UPDATE process_health SET status = 'healthy', pid = 999999, uptime_seconds = 376,
                           memory_usage_mb = 87, restarts = 77, last_error = 'an old error',
                           last_heartbeat = now() - interval '2 minutes', started_at = now() - interval '8 minutes'
                           WHERE process_name IN ('meta', 'wwebjs')""")
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port()}
    env = _pm2_env(tmp_path, database_url, redis_url, ports, TEST_CRASH_ON_START="meta")
    pids: list[int] = []
    with _pm2_session(tmp_path, env, pids):
        started = _pm2(["start", "ecosystem.config.js", "--only", "bisnesgpt-api,bisnesgpt-wwebjs,bisnesgpt-meta"],
                       env)
        assert started.returncode == 0, started.stdout + started.stderr
        def _three_crashes() -> list[dict[str, Any]] | None:
            found = query(database_url, "SELECT event_data FROM process_events "
                                        "WHERE process_name = 'meta' AND event_type = 'crash'")
            return found if len(found) >= 3 else None

        crashes = wait_until(_three_crashes, timeout=90, interval=0.25, what="three crashes of meta")
        assert len({c["event_data"]["pid"] for c in crashes}) == len(crashes)  # one event per attempt
        assert all("StartupCrash" in c["event_data"]["error"] for c in crashes)
        pids += _app_pids(env, "bisnesgpt-api") + _app_pids(env, "bisnesgpt-wwebjs")

        code, body = get_json(f"http://127.0.0.1:{ports['api']}/health/all")
        assert code == 503 and body["roles"]["meta"]["status"] == "down"
        meta = _process(body, "meta")
        assert meta["status"] == "down" and meta["pid"] not in (None, 999999)
        assert meta["uptimeSeconds"] < 60 and meta["memoryMb"] != 87 and "StartupCrash" in meta["lastError"]
        assert 1 <= meta["restarts"] < 77 and meta["supervisor"] == "pm2"
        def _wwebjs_healthy() -> dict[str, Any] | None:
            found = _process(get_json(f"http://127.0.0.1:{ports['api']}/health/all")[1], "wwebjs")
            return found if found["status"] == "healthy" else None

        wwebjs = wait_until(_wwebjs_healthy, timeout=60, what="wwebjs healthy")
        assert wwebjs["pid"] != 999999 and wwebjs["restarts"] == 0 and wwebjs["lastError"] is None
        starts = query(database_url, "SELECT count(*) AS n FROM process_starts WHERE process_name = 'meta' "
                                     "AND ready_at IS NULL AND outcome = 'crashed'")[0]["n"]
        assert starts >= 3

        doctor = bisnesgpt(["doctor", "--json"], cwd=tmp_path, env=env)
        report = json.loads(doctor.stdout)
        checks = {c["name"]: c for c in report["checks"]}
        print("\n" + "\n".join(f"{'PASS' if c['ok'] else 'FAIL'} {n}: {c['evidence']}" for n, c in checks.items()))
        assert doctor.returncode == 1
        assert checks["processes-online"]["ok"] is False and "meta down" in checks["processes-online"]["evidence"]
        assert checks["recent-errors"]["ok"] is False and "meta crash" in checks["recent-errors"]["evidence"]


def _daemon_pid(pm2_home: Path) -> int | None:
    try:
        return int((pm2_home / "pm2.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
