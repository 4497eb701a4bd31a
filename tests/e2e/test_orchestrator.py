"""The real orchestrator: start, health of every process, logs, status, shutdown, no orphans.

Timings are shortened through settings (tests/support/orchestrator.py); measured numbers
are printed (``-s``) for the record, and only behaviour is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bisnesgpt.coordination.channels import PROCESS_SHUTDOWN, deployment_namespace, publish
from bisnesgpt.infra.redis import redis_client
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
        assert {r["queue"] for r in depth_rows} == {"meta-messages", "status-updates", "webhook-events",
                                                   "media-downloads"}
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


@contextmanager
def _sampling(sample: Callable[[], Any], interval: float = 0.02) -> Iterator[list[Any]]:
    """Call ``sample`` in a thread every ``interval`` seconds while the block runs; what it returned."""
    seen: list[Any] = []
    done = threading.Event()

    def _run() -> None:
        while not done.is_set():
            seen.append(sample())
            done.wait(interval)

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(10)


class RowStatuses:
    """Samples the row statuses of some process names over one connection (used from one thread)."""

    def __init__(self, database_url: str, names: tuple[str, ...]) -> None:
        self.names = list(names)
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(database_url))

    def __call__(self) -> set[tuple[str, str]]:
        rows = self.loop.run_until_complete(self.conn.fetch(
            "SELECT process_name, status FROM process_health WHERE process_name = ANY($1::text[])", self.names))
        return {(r["process_name"], r["status"]) for r in rows}

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@pytest.mark.timeout(240)
def test_restarts_that_were_asked_for_never_show_as_crashed(tmp_path: Path, database_url: str,
                                                            redis_url: str) -> None:
    """A memory drain (meta over a 20 MB limit) and a process:shutdown rolling restart (wwebjs,
    exit 0): restarted, and their rows say restarting, never crashed."""
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, META_MAX_MEMORY="20M",
                         META_MAX_RESTARTS="50") as run:
        wait_until(lambda: http_status(run.url("wwebjs")) == 200, timeout=90, what="wwebjs serving")
        sample = RowStatuses(database_url, ("meta", "wwebjs"))
        with _sampling(sample) as seen:
            run.wait_event("meta", "memory_restart", count=2, timeout=90)
            old = run.pid_of("wwebjs")

            async def _rolling() -> None:
                client = redis_client(redis_url)
                try:
                    # As an operator of this deployment would: under its namespace.
                    await publish(client, PROCESS_SHUTDOWN, {"targets": ["wwebjs"], "host": socket.gethostname(),
                                                             "reason": "rolling restart"},
                                  namespace=deployment_namespace(None, database_url, redis_url))
                finally:
                    await client.aclose()

            asyncio.run(_rolling())
            exit_event = run.wait_event("wwebjs", "exit", timeout=60)[0]
            wait_until(lambda: run.pid_of("wwebjs") not in (None, old), timeout=30, what="a new wwebjs")
            wait_until(lambda: http_status(run.url("wwebjs")) == 200, timeout=60, what="the new wwebjs serving")
        sample.close()
        statuses = set().union(*seen)
        print(f"\n[measured] row statuses seen during 2 memory restarts and a rolling restart: {sorted(statuses)}")
        assert ("meta", "crashed") not in statuses and ("wwebjs", "crashed") not in statuses
        assert ("meta", "restarting") in statuses
        assert exit_event["severity"] == "warning" and exit_event["event_data"]["exitCode"] == 0
        assert not run.events("meta", "crash") and not run.events("wwebjs", "crash")
        assert run.wait_event("wwebjs", "restart")[0]["event_data"]["reason"] == "exit"
        code, _ = run.stop()
        assert code == 0
        run.assert_nothing_left()


@pytest.mark.timeout(300)
def test_a_duplicate_orchestrator_never_makes_the_originals_look_down(tmp_path: Path, database_url: str,
                                                                     redis_url: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with OrchestratorRun(tmp_path / "a", database_url=database_url, redis_url=redis_url) as first:
        first.wait_healthy(["api", "wwebjs", "meta"])
        originals = {name: proc.pid for name, proc in first.children().items()}

        # The same data directory: refused at once, one line naming the running orchestrator.
        refused = bisnesgpt(["start"], cwd=first.workdir, env=first.env, timeout=60)
        print(f"\n{refused.stderr.strip()}")
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            f"bisnesgpt: an orchestrator (pid {first.pid}) is already running on {(first.workdir / 'data').resolve()}; "
            "stop it first, or give this one another DATA_DIR"]
        assert {name: proc.pid for name, proc in first.children().items()} == originals

        # Another data directory but the same ports, database and Redis: a duplicate system.
        ports = {f"{role.upper()}_PORT": str(port) for role, port in first.ports.items()}
        with OrchestratorRun(tmp_path / "b", database_url=database_url, redis_url=redis_url, **ports) as second:
            def _both_listed() -> dict[str, Any] | None:
                code, body = get_json(first.url("api", "/health/all"))
                pids = {(p["processName"], p["pid"]) for p in body.get("processes", []) if p["status"] == "healthy"}
                theirs = {name: proc.pid for name, proc in second.children().items()}
                return body if code == 200 and len(theirs) == 3 and set(originals.items()) | set(
                    theirs.items()) == pids else None

            body = wait_until(_both_listed, timeout=90, interval=0.2, what="both systems' processes listed")
            assert all(p["duplicate"] for p in body["processes"] if p["expected"])
            assert {(r, v["expectedInstances"], v["healthyInstances"]) for r, v in body["roles"].items()} == {
                ("api", 1, 1), ("wwebjs", 1, 1), ("meta", 1, 1)}
            status = json.loads(bisnesgpt(["status", "--json"], cwd=first.workdir, env=first.env).stdout)
            assert set(originals.values()) <= {p["pid"] for p in status["processes"]}

            def _sample() -> tuple[int | None, str | None]:
                code, body = get_json(first.url("api", "/health/all"), timeout=2)
                return code, body.get("status")

            with _sampling(_sample, interval=0.05) as seen:
                code, took = second.stop()
                time.sleep(3)  # and a little after
            print(f"\n[measured] stopping the duplicate took {took:.2f}s; /health/all answers meanwhile: "
                  f"{sorted({c for c, _ in seen}, key=str)}")
            assert code == 0
            assert (503, "unhealthy") not in seen and not [s for c, s in seen if c is not None and c != 200]
        rows = query(database_url, "SELECT process_name, pid, status FROM process_health ORDER BY process_name")
        assert {(r["process_name"], r["pid"], r["status"]) for r in rows} == {
            (name, pid, "healthy") for name, pid in originals.items()}
        status = json.loads(bisnesgpt(["status", "--json"], cwd=first.workdir, env=first.env).stdout)
        assert {p["processName"]: p["pid"] for p in status["processes"] if p["expected"]} == originals
        code, _ = first.stop()
        assert code == 0
        first.assert_nothing_left()


def _alive(proc: object) -> bool:
    import psutil

    assert isinstance(proc, psutil.Process)
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.timeout(240)
def test_wwebjs_instances_run_side_by_side_and_share_the_sessions(tmp_path: Path, database_url: str,
                                                                   redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, WWEBJS_INSTANCES="2",
                         ENABLE_META="false", WWEBJS_RECONCILE_INTERVAL_MS="500") as run:
        body = run.wait_healthy(["api", "wwebjs", "wwebjs-1"])
        assert body["roles"]["wwebjs"]["expectedInstances"] == 2
        assert body["roles"]["wwebjs"]["status"] == "healthy"
        children = run.children()
        assert children["wwebjs"].pid != children["wwebjs-1"].pid
        # Both are members of the session fleet: each computes its share from the other's row.
        members_sql = "SELECT process_name FROM wwebjs_members WHERE expires_at > now()"
        wait_until(lambda: {r["process_name"] for r in query(database_url, members_sql)} == {"wwebjs", "wwebjs-1"},
                   timeout=30, what="both wwebjs processes in wwebjs_members")
        assert run.stop()[0] == 0
        # A stopped process leaves the fleet at once (it does not wait for its row to expire).
        assert query(database_url, "SELECT holder FROM wwebjs_members") == []
