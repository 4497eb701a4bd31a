"""The real orchestrator: start, health of every process, logs, status, shutdown, no orphans.

Timings are shortened through settings (tests/support/orchestrator.py); measured numbers
are printed (``-s``) for the record, and only behaviour is asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.support.orchestrator import OrchestratorRun, bisnesgpt, get_json, http_status, query
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

KILL_GRACE_S = 2.0  # orchestrator.judging.KILL_GRACE_S


@pytest.mark.timeout(240)
def test_start_serves_every_instance_then_sigterm_stops_all(tmp_path: Path, database_url: str,
                                                            redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, API_INSTANCES="2") as run:
        body = run.wait_healthy(["api", "api-1", "wwebjs", "meta"])
        print(f"\n[measured] start to /health/all 200 with 4 processes: {time.monotonic() - run.started_at:.2f}s")
        assert body["status"] == "healthy"
        assert {r: v["status"] for r, v in body["roles"].items()} == {"api": "healthy", "wwebjs": "healthy",
                                                                      "meta": "healthy"}
        assert body["roles"]["api"]["expectedInstances"] == 2
        children = run.children()
        reported = {p["processName"]: p["pid"] for p in body["processes"] if p["expected"]}
        assert reported == {name: proc.pid for name, proc in children.items()}
        assert children["api"].ppid() == run.pid

        for role in ("api", "wwebjs", "meta"):
            code, health = get_json(run.url(role))
            assert code == 200, health
            assert health["role"] == role
            assert health["supervised"] is True
            assert {"processName", "pid", "status", "uptime", "memory", "lastHeartbeat", "errorCount",
                    "activeBots", "checks"} <= set(health)
            assert health["checks"]["database"]["ok"] and health["checks"]["redis"]["ok"]
            assert "bisnesgpt_process_up" in __import__("httpx").get(run.url(role, "/metrics")).text
        assert http_status(run.url("api", "/api/health")) == 200

        # The orchestrator relays each child's status_update to its siblings over their sockets.
        def _meta_knows_siblings() -> bool:
            peers = get_json(run.url("meta"))[1].get("peers", {})
            relayed = {n: (peers.get(n) or {}).get("supervisor") or {} for n in ("api", "api-1", "wwebjs")}
            return "meta" not in peers and all(r.get("pid") == children[n].pid and r.get("status") == "ready"
                                               for n, r in relayed.items())

        wait_until(_meta_knows_siblings, timeout=20, what="meta to know its siblings")

        # Every child heartbeats into process_health and writes process_metrics.
        wait_until(lambda: len(query(database_url, "SELECT DISTINCT process_name FROM process_metrics "
                                                   "WHERE metric_name = 'rss_mb'")) == 4, timeout=30)
        depth_rows = query(database_url, "SELECT DISTINCT metadata->>'queue' AS queue FROM process_metrics "
                                         "WHERE metric_name = 'queue_depth' AND process_name = 'meta'")
        assert {r["queue"] for r in depth_rows} == {"meta-messages", "status-updates", "webhook-events"}
        wwebjs_depth = query(database_url, "SELECT DISTINCT metadata->>'queue' AS queue FROM process_metrics "
                                           "WHERE metric_name = 'queue_depth' AND process_name = 'wwebjs'")
        assert {r["queue"] for r in wwebjs_depth} == {"wwebjs-messages"}

        # The pm2-like table and its JSON agree with the live children.
        env = run.env | {"COLUMNS": "160"}
        table = bisnesgpt(["status"], cwd=tmp_path, env=env)
        assert table.returncode == 0, table.stderr
        for name, proc in children.items():
            assert re.search(rf"{name.split('-')[0]}\s+{name.split('-')[1] if '-' in name else 0}\s+{proc.pid}\s+"
                             r"(healthy|degraded)", table.stdout), table.stdout
        status = json.loads(bisnesgpt(["status", "--json"], cwd=tmp_path, env=env).stdout)
        assert {p["processName"]: p["pid"] for p in status["processes"] if p["expected"]} == reported
        assert {r: v["statusCode"] for r, v in status["http"].items()} == {"api": 200, "wwebjs": 200, "meta": 200}

        # Per-role log files with timestamps, plus the combined console with names.
        for role in ("api", "wwebjs", "meta"):
            out = (tmp_path / "logs" / f"{role}-out.log").read_text()
            assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ .* serving on", out, re.M), out[-2000:]
            assert (tmp_path / "logs" / f"{role}-error.log").exists()
        assert re.search(r"^api-1\s+\| .*api-1\[\d+\] INFO", run.output(), re.M)

        code, took = run.stop(signal.SIGTERM)
        print(f"[measured] SIGTERM to orchestrator exit (4 idle children): {took:.2f}s")
        assert code == 0, run.output()[-3000:]
        assert took < 3 + KILL_GRACE_S + 10  # SHUTDOWN_TIMEOUT + grace, with room for a loaded machine
        run.assert_nothing_left()
    stops = {e["process_name"]: e["event_data"] for e in run.events(event_type="stop")}
    assert {"api", "api-1", "wwebjs", "meta", "orchestrator"} <= set(stops)
    assert stops["meta"]["signals"] == ["SIGTERM"]  # one graceful request, not a forced stop
    assert not run.events(event_type="crash")
    rows = query(database_url, "SELECT process_name, status FROM process_health ORDER BY process_name")
    assert {r["process_name"]: r["status"] for r in rows} == {n: "stopped" for n in ("api", "api-1", "meta", "wwebjs")}


@pytest.mark.timeout(180)
def test_sigterm_meets_the_deadline_with_a_child_that_cannot_drain(tmp_path: Path, database_url: str,
                                                                   redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url,
                         MAX_HEARTBEAT_AGE="60000") as run:
        run.wait_healthy(["api", "wwebjs", "meta"])
        stuck = run.pid_of("wwebjs")
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)  # cannot handle SIGTERM: only SIGKILL will do
        code, took = run.stop(signal.SIGTERM)
        print(f"\n[measured] SIGTERM with a stopped child: exit after {took:.2f}s "
              f"(SHUTDOWN_TIMEOUT 3s + {KILL_GRACE_S}s grace)")
        assert code == 0
        assert 3 <= took < 3 + KILL_GRACE_S + 10
        assert "wwebjs (pid" in run.output() and "did not stop in time: SIGKILL" in run.output()
        run.assert_nothing_left()
    assert run.events("orchestrator", "stop")[-1]["event_data"]["killed"] == ["wwebjs"]


@pytest.mark.timeout(180)
def test_a_second_ctrl_c_kills_now(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, SHUTDOWN_TIMEOUT="60",
                         MAX_HEARTBEAT_AGE="120000") as run:
        run.wait_healthy(["api", "wwebjs", "meta"])
        stuck = run.pid_of("meta")
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        assert run.proc is not None
        began = time.monotonic()
        run.proc.signal(signal.SIGINT)
        run.proc.wait_for_output(r"received SIGINT; stopping", timeout=20)
        run.proc.signal(signal.SIGINT)
        code = run.proc.wait(60)
        took = time.monotonic() - began
        print(f"\n[measured] Ctrl-C, Ctrl-C with a stuck child: exit after {took:.2f}s (SHUTDOWN_TIMEOUT 60s)")
        assert code == 0
        assert took < 30  # far below the 60 s deadline the first Ctrl-C alone would wait
        assert "second signal: killing the children now" in run.output()
        run.assert_nothing_left()


@pytest.mark.timeout(180)
def test_enable_meta_false_and_no_orphans_when_the_orchestrator_is_killed(tmp_path: Path, database_url: str,
                                                                         redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, ENABLE_META="false") as run:
        body = run.wait_healthy(["api", "wwebjs"])
        assert "meta" not in run.children()
        assert not [p for p in run.children().values() if "meta" in p.environ().get("PROCESS_NAME", "")]
        assert body["roles"]["meta"] == {"status": "disabled", "enabled": False, "expectedInstances": 0,
                                         "healthyInstances": 0}
        meta_rows = [p for p in body["processes"] if p["role"] == "meta"]
        assert meta_rows and all(p["status"] == "disabled" for p in meta_rows)
        assert http_status(run.url("meta")) is None  # nothing listens on META_PORT
        view = query(database_url, "SELECT computed_status FROM v_process_health_overview WHERE role = 'meta'")
        assert [r["computed_status"] for r in view] == ["disabled"]
        doctor = bisnesgpt(["doctor", "--json"], cwd=tmp_path, env=run.env)
        report = json.loads(doctor.stdout)
        assert doctor.returncode == 0, json.dumps(report, indent=1)
        assert "meta disabled" in next(c for c in report["checks"] if c["name"] == "processes-online")["evidence"]

        # kill -9 of the orchestrator itself: the children must not outlive it.
        children = list(run.children().values())
        os.kill(run.pid, signal.SIGKILL)
        began = time.monotonic()
        wait_until(lambda: not any(_alive(c) for c in children), timeout=30, what="children to exit")
        print(f"\n[measured] orchestrator SIGKILLed: children gone after {time.monotonic() - began:.2f}s")
        run.assert_nothing_left()


def _alive(proc: object) -> bool:
    import psutil

    assert isinstance(proc, psutil.Process)
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
