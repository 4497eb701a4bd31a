"""Faults against the real orchestrator: kill -9, crash at start, hang, memory over the limit.

Each test proves the supervision rule and prints what it measured (``-s``); wall-clock
numbers are reported, never asserted beyond "the backoff was at least what the policy
says" and generous upper bounds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.orchestrator import OrchestratorRun, get_json, http_status, query
from tests.support.polling import wait_until

pytestmark = pytest.mark.chaos

BASE_DELAY_MS = {"api": 400, "wwebjs": 600, "meta": 500}  # FAST_TIMINGS
MAX_HEARTBEAT_AGE_S = 5.0


def _view_status(database_url: str, name: str) -> str | None:
    rows = query(database_url, "SELECT computed_status FROM v_process_health_overview WHERE process_name = $1", name)
    return rows[0]["computed_status"] if rows else None


def _process_field(body: dict[str, object], name: str, field: str) -> str | None:
    for process in body.get("processes", []):  # type: ignore[union-attr]
        if process["processName"] == name:  # type: ignore[index]
            return str(process[field])  # type: ignore[index]
    return None


def _process_status(body: dict[str, object], name: str) -> str | None:
    return _process_field(body, name, "status")


@pytest.mark.timeout(300)
def test_kill_9_of_any_child_restarts_it_with_backoff_and_health_all_follows(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, API_INSTANCES="2") as run:
        run.wait_healthy(["api", "api-1", "wwebjs", "meta"])
        time.sleep(1.6)  # past min_uptime (1.5 s): the next restart is the first in a row
        for name, role in (("meta", "meta"), ("wwebjs", "wwebjs"), ("api-1", "api")):
            old = run.pid_of(name)
            assert old is not None
            killed_at = time.monotonic()
            os.kill(old, signal.SIGKILL)

            # /health/all turns 503 (well within MAX_HEARTBEAT_AGE) and names the dead process.
            down_body: dict[str, object] = {}

            def _down(name: str = name) -> bool:
                nonlocal down_body
                code, down_body = get_json(run.url("api", "/health/all"))
                return code == 503 and _process_status(down_body, name) == "down"

            wait_until(_down, timeout=MAX_HEARTBEAT_AGE_S, interval=0.05, what=f"/health/all 503 for {name}")
            down_after = time.monotonic() - killed_at
            # v_process_health_overview, read in the same query as /health/all's judgement.
            view_when_down = _process_field(down_body, name, "viewStatus")

            wait_until(lambda name=name, old=old: run.pid_of(name) not in (None, old), timeout=30, interval=0.02,
                       what=f"a new {name}")
            respawn_after = time.monotonic() - killed_at
            new = run.pid_of(name)
            wait_until(lambda name=name, new=new: any(e["event_data"]["pid"] == new
                                                      for e in run.events(name, "ready")),
                       timeout=60, interval=0.05, what=f"the new {name} ready")
            ready_after = time.monotonic() - killed_at
            if role != "api":
                assert http_status(run.url(role)) == 200
            body = run.wait_healthy(["api", "api-1", "wwebjs", "meta"])
            all_after = time.monotonic() - killed_at
            print(f"\n[measured] kill -9 {name}: /health/all 503 after {down_after:.2f}s; "
                  f"new pid after {respawn_after:.2f}s (backoff {BASE_DELAY_MS[role]} ms); "
                  f"ready (serving /health) after {ready_after:.2f}s; /health/all 200 after {all_after:.2f}s")

            assert view_when_down == "down"
            assert respawn_after >= BASE_DELAY_MS[role] / 1000
            assert _process_status(body, name) == "healthy"
            assert _process_field(body, name, "viewStatus") == "healthy"
            crash = run.wait_event(name, "crash")[-1]["event_data"]
            assert crash["signal"] == "SIGKILL" and crash["pid"] == old
            restart = run.wait_event(name, "restart")[-1]["event_data"]
            assert restart == restart | {"reason": "crash", "oldPid": old, "newPid": new, "attempt": 1,
                                         "delayMs": BASE_DELAY_MS[role]}
            row = query(database_url, "SELECT restarts, pid FROM process_health WHERE process_name = $1", name)[0]
            assert row == {"restarts": 1, "pid": new}
            if role != "api":  # the replacement was told its siblings' status at spawn (snapshot)
                peers = get_json(run.url(role))[1]["peers"]
                assert all(peers[n]["supervisor"]["pid"] == run.pid_of(n)
                           for n in ("api", "api-1", "wwebjs", "meta") if n != name)
            # The siblings heard about the replacement (status_update relay / process:status).
            sibling = "api" if name != "api-1" else "meta"
            wait_until(lambda name=name, new=new, sibling=sibling: ((get_json(run.url(sibling))[1].get(
                "peers", {}).get(name) or {}).get("supervisor") or {}).get("pid") == new,
                timeout=30, what=f"{sibling} to know the new {name}")
        code, _ = run.stop()
        assert code == 0
        run.assert_nothing_left()


@pytest.mark.timeout(300)
def test_meta_crashing_at_start_is_given_up_while_api_and_wwebjs_keep_serving(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, TEST_CRASH_ON_START="meta",
                         META_MAX_RESTARTS="3", META_RESTART_DELAY="200") as run:
        give_up = run.wait_event("meta", "give_up", timeout=120)[0]
        assert give_up["severity"] == "critical"
        assert give_up["event_data"]["restarts"] == 3 and give_up["event_data"]["fatal"] is False
        crashes = run.events("meta", "crash")
        restarts = run.events("meta", "restart")
        assert len(crashes) == 4  # the first start and 3 restarts
        assert [r["event_data"]["delayMs"] for r in restarts] == [200, 400, 800]
        assert all(c["event_data"]["exitCode"] == 1 for c in crashes)
        assert "StartupCrash: TEST_CRASH_ON_START='meta'" in (tmp_path / "logs" / "meta-error.log").read_text()

        # The rest keeps serving; meta stays down; the orchestrator stays up.
        for role in ("api", "wwebjs"):
            wait_until(lambda role=role: http_status(run.url(role)) == 200, timeout=60)
        time.sleep(1.0)
        assert run.proc is not None and run.proc.popen.poll() is None
        assert "meta" not in run.children()
        code, body = get_json(run.url("api", "/health/all"))
        assert code == 503
        assert body["roles"]["meta"]["status"] == "down"
        assert body["roles"]["api"]["status"] == "healthy" and body["roles"]["wwebjs"]["status"] == "healthy"
        rows = query(database_url, "SELECT status, last_error FROM process_health WHERE process_name = 'meta'")
        assert rows[0]["status"] == "errored" and "given up" in rows[0]["last_error"]
        assert _view_status(database_url, "meta") == "down"
        code, _ = run.stop()
        assert code == 0
        run.assert_nothing_left()


@pytest.mark.timeout(300)
def test_api_crashing_at_start_stops_the_orchestrator_with_non_zero_status(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, TEST_CRASH_ON_START="api",
                         API_MAX_RESTARTS="2", API_RESTART_DELAY="200") as run:
        assert run.proc is not None
        code = run.proc.wait(120)
        print(f"\n[measured] api crash loop: orchestrator exited {code} after {time.monotonic() - run.started_at:.2f}s")
        assert code == 1, run.output()[-3000:]
        assert len(run.events("api", "crash")) == 3
        assert [r["event_data"]["delayMs"] for r in run.events("api", "restart")] == [200, 400]
        give_up = run.events("api", "give_up")
        assert len(give_up) == 1 and give_up[0]["event_data"]["fatal"] is True
        stop = run.events("orchestrator", "stop")[-1]
        assert stop["severity"] == "critical" and stop["event_data"]["exitCode"] == 1
        run.assert_nothing_left()  # wwebjs and meta were stopped too


@pytest.mark.timeout(300)
def test_a_hung_child_is_killed_and_replaced(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url) as run:
        run.wait_healthy(["api", "wwebjs", "meta"])
        hung = run.pid_of("wwebjs")
        assert hung is not None
        stopped_at = time.monotonic()
        os.kill(hung, signal.SIGSTOP)  # keeps its pid, stops pinging
        hang = run.wait_event("wwebjs", "hang", timeout=60)[0]
        detected_after = time.monotonic() - stopped_at
        assert hang["event_data"]["pid"] == hung and hang["severity"] == "error"
        assert hang["event_data"]["silentSeconds"] >= MAX_HEARTBEAT_AGE_S
        wait_until(lambda: run.pid_of("wwebjs") not in (None, hung), timeout=60, what="a new wwebjs")
        replaced_after = time.monotonic() - stopped_at
        wait_until(lambda: http_status(run.url("wwebjs")) == 200, timeout=60)
        print(f"\n[measured] SIGSTOP wwebjs: hang detected after {detected_after:.2f}s "
              f"(MAX_HEARTBEAT_AGE {MAX_HEARTBEAT_AGE_S}s); replaced after {replaced_after:.2f}s; "
              f"/health 200 after {time.monotonic() - stopped_at:.2f}s")
        restart = run.wait_event("wwebjs", "restart")[0]["event_data"]
        assert restart["reason"] == "hang" and restart["oldPid"] == hung
        killed = run.events("wwebjs", "killed")
        assert killed and killed[0]["event_data"]["pid"] == hung  # SIGTERM could not land: SIGKILL did
        wait_until(lambda: not _pid_alive(hung), timeout=10, what="the hung process to be gone")
        run.wait_healthy(["api", "wwebjs", "meta"])
        code, _ = run.stop()
        assert code == 0
        run.assert_nothing_left()


@pytest.mark.timeout(300)
def test_rss_over_the_limit_restarts_the_child_after_draining(tmp_path: Path, database_url: str,
                                                              redis_url: str) -> None:
    # A Python role is ~60-90 MB resident: a 20 MB limit is exceeded as soon as it is online.
    with OrchestratorRun(tmp_path, database_url=database_url, redis_url=redis_url, META_MAX_MEMORY="20M",
                         META_MAX_RESTARTS="50") as run:
        event = run.wait_event("meta", "memory_restart", timeout=60)[0]
        data = event["event_data"]
        assert data["limitBytes"] == 20 * 1024 * 1024 and data["rssBytes"] > data["limitBytes"]
        restart = run.wait_event("meta", "restart", timeout=60)[0]["event_data"]
        assert restart["reason"] == "memory" and restart["oldPid"] == data["pid"]
        # It was drained, not killed: the old child recorded its own graceful stop.
        stops = [e["event_data"] for e in run.events("meta", "stop")]
        assert any(s["pid"] == data["pid"] and s["signals"] == ["SIGTERM"] for s in stops)
        assert not [e for e in run.events("meta", "killed") if e["event_data"]["pid"] == data["pid"]]
        assert not run.events("meta", "crash")
        print(f"\n[measured] memory restart: rss {data['rssBytes'] / 2**20:.1f} MB > limit 20 MB; "
              f"restart after {restart['delayMs']} ms backoff")
        # The other roles are unaffected.
        assert http_status(run.url("api")) == 200 and http_status(run.url("wwebjs")) == 200
        code, _ = run.stop()
        assert code == 0
        run.assert_nothing_left()


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
