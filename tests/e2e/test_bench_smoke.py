"""``python -m bench --quick`` works: the harness runs end to end and writes its JSON.

A harness check only: no figure is asserted (speed belongs in ``make bench``, printed,
never pass/fail). What is asserted is that the measurements saw real traffic: 202s from
the API, and every message of the end-to-end window received by the emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(330)]
REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_runs_and_writes_results(tmp_path: Path, pg_server_url: str, redis_server_url: str) -> None:
    env = clean_env(BENCH_DATABASE_URL=pg_server_url, BENCH_REDIS_URL=redis_server_url)
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--sections", "accept,e2e,floor", "--out",
                           str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "ACCEPT" in done.stdout and "END-TO-END" in done.stdout and "DURABLE FLOOR" in done.stdout
    [path] = tmp_path.glob("bench-*-quick.json")
    results = json.loads(path.read_text())
    for run in results["accept"]["runs"]:
        assert run["post_saturation"]["statuses"].get("202", 0) > 0
        assert run["health_saturation"]["statuses"].get("200", 0) > 0
        assert run["durability"]["every_202_stored"]
    half = results["e2e"]["half_load"]
    assert half["messages"] > 0 and half["received_by_emulator"] == half["messages"]
    assert results["e2e"]["anchor_python_bullmq"]["jobs"] > 0
    floor = results["floor"]
    assert floor["load"]["statuses"].get("202", 0) > 0 and floor["all_sent"]
    assert floor["product_vs_floor"]["floor_cpu_ms"] > 0
