"""``pm2 start ecosystem.config.js`` brings the three roles up healthy (runs when pm2 is on PATH;
CI installs it with ``npm i -g pm2``). PM2 gets its own PM2_HOME in a temporary directory
and is always stopped with ``pm2 kill``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.orchestrator import ENCRYPTION_KEY, get_json, http_status
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


@pytest.mark.timeout(240)
def test_pm2_starts_the_three_roles_healthy(tmp_path: Path, database_url: str, redis_url: str) -> None:
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port()}
    pm2_home = tmp_path / "pm2"
    env = clean_env(
        PM2_HOME=str(pm2_home), DATABASE_URL=database_url, REDIS_URL=redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
        HOST="127.0.0.1", API_PORT=str(ports["api"]), WWEBJS_PORT=str(ports["wwebjs"]),
        META_PORT=str(ports["meta"]), API_INSTANCES="2", HEARTBEAT_INTERVAL="500",
        LOG_DIR=str(tmp_path / "logs"),
    )
    if not (REPO / ".venv" / "bin" / "python").exists():
        env["BISNESGPT_PYTHON"] = sys.executable
    pids: list[int] = []
    try:
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
        pids = [app["pid"] for app in listing]
        assert sorted(pids) == sorted(p["pid"] for p in processes.values())
        # PM2 wrote the per-role logs with its date prefix.
        assert "serving on" in (tmp_path / "logs" / "meta-out.log").read_text()

        # PM2 stops a role with SIGINT: our graceful path.
        stopped = _pm2(["stop", "bisnesgpt-meta"], env)
        assert stopped.returncode == 0
        meta_stopped = f"event stop {{'pid': {processes['meta']['pid']}, 'signals': ['SIGINT']"
        wait_until(lambda: meta_stopped in (tmp_path / "logs" / "meta-out.log").read_text(), timeout=30)
    finally:
        daemon_pid = _daemon_pid(pm2_home)
        _pm2(["kill"], env, timeout=60)
        for pid in [*pids, *([daemon_pid] if daemon_pid else [])]:
            wait_until(lambda pid=pid: not _alive(pid), timeout=20, what=f"pid {pid} gone")
        left = [p for p in processes_under(tmp_path) if _alive(p.pid)]
        for proc in left:
            os.kill(proc.pid, signal.SIGKILL)
        assert not left, [p.cmdline() for p in left]


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
