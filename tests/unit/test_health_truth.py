"""Health that tells the truth: the verdict of one row (unresponsive after two missed
heartbeats, degraded serving, starting, restarting), slots with more than one instance,
and the lock that allows one orchestrator per data directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.config import Settings
from bisnesgpt.health.overview import build_overview
from bisnesgpt.health.statuses import judge
from bisnesgpt.orchestrator.children import ExitInfo
from bisnesgpt.orchestrator.lock import OrchestratorLock, OrchestratorRunning
from bisnesgpt.orchestrator.restarts import exited_status

pytestmark = pytest.mark.unit


def _settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.mark.parametrize(("reported", "age", "interval", "expected"), [
    # A process that declared a 10 s interval: two missed heartbeats (20 s) and it is
    # unresponsive — long before MAX_HEARTBEAT_AGE (60 s), and never "degraded".
    ("healthy", 19.9, 10.0, "healthy"), ("healthy", 20.0, 10.0, "unresponsive"),
    ("healthy", 45.0, 10.0, "unresponsive"), ("healthy", 60.0, 10.0, "down"),
    ("draining", 25.0, 10.0, "unresponsive"), ("starting", 1.0, 10.0, "starting"),
    ("degraded", 1.0, 10.0, "degraded"), ("restarting", 0.5, 10.0, "down"), ("crashed", 0.1, 10.0, "down"),
    # Without a declared interval (rows of the Node server) the original judgement holds.
    ("healthy", 45.0, None, "degraded"),
])
def test_a_row_is_judged_by_its_own_interval(reported: str, age: float, interval: float | None,
                                             expected: str) -> None:
    assert judge(reported, age, 60.0, interval) == expected


def _row(name: str, status: str = "healthy", age: float | None = 1.0, **extra: Any) -> dict[str, Any]:
    role, _, instance = name.partition("-")
    return {"process_name": name, "role": role, "instance_id": int(instance or 0), "status": status,
            "pid": 100, "host": "h", "last_heartbeat": None, "uptime_seconds": 5, "memory_usage_mb": 70,
            "cpu_usage_percent": 1.0, "active_bots": 0, "messages_processed": 0, "error_count": 0,
            "last_error": None, "restarts": 0, "metadata": {"heartbeatIntervalMs": 10_000},
            "heartbeat_age": age, "view_status": None} | extra


def test_a_hung_process_makes_its_role_and_the_whole_unhealthy() -> None:
    settings = _settings()
    overview = build_overview([_row("api"), _row("wwebjs", age=21.0), _row("meta")], settings)
    assert not overview.healthy
    assert overview.roles["wwebjs"].status == "down"
    assert {p.process_name: p.status for p in overview.processes}["wwebjs"] == "unresponsive"


def test_the_api_serving_without_redis_counts_as_serving() -> None:
    overview = build_overview([_row("api", status="degraded"), _row("wwebjs"), _row("meta")], _settings())
    assert overview.healthy
    assert overview.roles["api"].status == "healthy"


def test_two_living_instances_of_one_name_are_both_shown_and_the_slot_counts_once() -> None:
    settings = _settings()
    rows = [_row("api", pid=10, instance_key="a"), _row("api", pid=20, instance_key="b"), _row("wwebjs"),
            _row("meta")]
    overview = build_overview(rows, settings)
    assert overview.healthy
    apis = [p for p in overview.processes if p.process_name == "api"]
    assert [(p.pid, p.duplicate, p.expected) for p in apis] == [(10, True, True), (20, True, True)]
    assert (overview.roles["api"].expected, overview.roles["api"].ok) == (1, 1)
    # One of them stopping (its row says so until it is gone) never makes the slot look down.
    rows[1] = _row("api", status="stopped", pid=20, instance_key="b")
    overview = build_overview(rows, settings)
    assert overview.healthy and overview.roles["api"].status == "healthy"
    assert [p.duplicate for p in overview.processes if p.process_name == "api"] == [False, False]


@pytest.mark.parametrize(("code", "requested", "expected"), [
    (-9, None, "crashed"), (3, None, "crashed"), (0, None, "restarting"), (-15, "memory", "restarting"),
    (0, "memory", "restarting"), (-9, "hang", "crashed"), (-15, "shutdown", "restarting"),
])
def test_only_faults_are_recorded_as_crashes(code: int, requested: Any, expected: str) -> None:
    assert exited_status(ExitInfo.of_returncode(code, 1), requested) == expected


def test_a_second_orchestrator_on_the_same_data_directory_is_refused_naming_the_first(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from bisnesgpt.orchestrator.lock import OrchestratorLock; "
         "OrchestratorLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)",
         str(tmp_path / "data")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OrchestratorRunning, match=rf"an orchestrator \(pid {holder.pid}\) is already running"):
            OrchestratorLock(tmp_path / "data").acquire()
        # Whatever way the holder ends (kill -9 here), the kernel frees the lock.
        holder.kill()
        holder.wait(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                with OrchestratorLock(tmp_path / "data"):
                    break
            except OrchestratorRunning:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert (tmp_path / "data" / "orchestrator.lock").exists()
    finally:
        holder.kill()
        holder.wait(10)
