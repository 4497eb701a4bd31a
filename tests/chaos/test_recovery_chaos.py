"""Recovery under load (chaos scenarios 5, 7 and 8), on the chaos harness.

5. the API instances are ``kill -9``-ed (one, then all at once) and respawned by the
   orchestrator: the engines keep working, and the clients' retries with the same
   ``Idempotency-Key`` (connection errors, 503s) produce no duplicates at all;
7. Redis (append-only file on) and PostgreSQL — servers of the test's own — are restarted
   under load: no acknowledged message is lost, processing resumes within 5 s of each
   coming back;
8. graceful stop (SIGTERM to the orchestrator) under load: it exits within
   ``SHUTDOWN_TIMEOUT`` + the kill grace without having to SIGKILL anyone, leaves no job
   active or stalled in Redis, and the next start on the same data drains everything.

Every scenario ends with the checker (``tests.support.chaos.check``) and prints its
``CHAOS RESULT`` line; ``CHAOS_SCALE`` scales load and durations.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bisnesgpt.db.migrate import migrate
from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres
from bisnesgpt.infra.embedded_redis import EmbeddedRedis
from bisnesgpt.messaging.queues import ALL_QUEUES
from bisnesgpt.orchestrator.judging import KILL_GRACE_S
from tests.support.chaos import (
    ChaosSystem,
    Fault,
    LoadGenerator,
    check,
    first_receipts_after,
    log,
    scaled,
    scenario_timer,
)
from tests.support.orchestrator import FAST_TIMINGS, get_json
from tests.support.polling import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

SHUTDOWN_TIMEOUT_S = float(FAST_TIMINGS["SHUTDOWN_TIMEOUT"])
# Processing must resume within this many seconds of a restarted server answering again.
RESUME_BOUND_S = 5.0
# Two API instances on the machine's shared PostgreSQL (max_connections 100, other runs too):
# a smaller pool each is plenty for this load.
SMALL_API_POOLS = {"DATABASE_POOL_API_MAX": "8"}


def _rates() -> tuple[float, float]:
    """(meta, wwebjs) messages/s: modest, the machine has 2 cores shared with other runs."""
    return scaled(20, 8), scaled(8, 4)


def leftover_jobs(redis_url: str) -> dict[str, int]:
    """Jobs a stop left behind: ``active`` entries, ``stalled`` candidates and live job locks."""
    client = redis.Redis.from_url(redis_url)
    try:
        found: dict[str, int] = {}
        for spec in ALL_QUEUES:
            for state, count in (("active", client.llen(f"bull:{spec.name}:active")),
                                 ("stalled", client.scard(f"bull:{spec.name}:stalled")),
                                 ("locks", sum(1 for _ in client.scan_iter(f"bull:{spec.name}:*:lock")))):
                if count:
                    found[f"{spec.name}:{state}"] = int(count)
        return found
    finally:
        client.close()


def error_answers(load: LoadGenerator) -> dict[str, int]:
    """What the clients' failed tries got: HTTP status or transport error name → count."""
    counts: Counter[str] = Counter()
    for send in load.sends:
        for error in send.errors:
            counts[error.split(":", 1)[0]] += 1
    return dict(counts)


def assert_no_server_errors(answers: dict[str, int]) -> None:
    """An outage answers 503 problem (or the connection is refused): never a 500."""
    assert not {k: v for k, v in answers.items() if k.isdigit() and k != "503" and k.startswith("5")}, answers


# --- 5. API restarted ---------------------------------------------------------------------------


def test_api_killed_under_load_retries_with_the_same_key_make_no_duplicates(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    """5. ``kill -9`` one API instance, then both: engines keep working; retries never duplicate."""
    meta_rate, web_rate = _rates()
    with scenario_timer("API restarted") as timer, \
            ChaosSystem(tmp_path, database_url=database_url, redis_url=redis_url, api_instances=2,
                        env=SMALL_API_POOLS) as system:
        engines = {name: system.run.pid_of(name) for name in ("meta", "wwebjs")}
        with LoadGenerator(system, meta_rate=meta_rate, wwebjs_rate=web_rate) as load:
            load.wait_acked(int(scaled(60, 20)))
            one = system.kill9("api")
            system.wait_respawned(one)
            load.wait_acked(int(scaled(40, 15)))
            backlog = system.status_counts()
            both = [system.kill9("api-1"), system.kill9("api")]
            outage_at = both[0].wall
            for fault in both:
                system.wait_respawned(fault)
            # Instances share the port: the API is back when /api/health answers again.
            wait_until(lambda: get_json(system.run.url("api", "/api/health"), timeout=1.0)[0] == 200,
                       timeout=90, interval=0.05, what="the API answering again")
            back = time.monotonic()
            back_wall = time.time()
            sent_while_down = (sum(1 for r in system.meta_sends() if outage_at <= float(r["ts"]) <= back_wall)
                               + sum(1 for m in system.web_sends() if outage_at <= float(m["first_at"]) <= back_wall))
            load.wait_acked(int(scaled(60, 20)))
            # The engines were never restarted and kept sending while the API was down/back.
            resumed = first_receipts_after(system, outage_at)
        retried = sum(1 for s in load.sends if s.attempts > 1)
        answers = error_answers(load)
        replayed_keys = sum(1 for s in load.sends if s.attempts > 1 and s.message_id)
        result = check(system, load, scenario="API restarted", duplicate_bound=0, extra={
            "retried_sends": retried, "retried_then_acked": replayed_keys,
            "api_outage_s": round(back - both[0].at, 2), "first_receipt_after_outage_s": resumed,
            "backlog_at_kill": {k: v for k, v in backlog.items() if k in ("queued", "sending")},
            "sent_while_api_down": sent_while_down,
            "error_answers": answers})
        result.assert_ok()
        assert_no_server_errors(answers)
        # Every send got its 2xx in the end: no Idempotency-Key was left answering 409.
        assert result.unacked == 0, [(s.key, s.errors[-3:]) for s in load.sends if not s.message_id][:5]
        assert retried >= 1, "no send was cut by the kills: the scenario proved nothing about retries"
        assert {name: system.run.pid_of(name) for name in ("meta", "wwebjs")} == engines
    log(f"duration {timer['seconds']:.1f}s")


# --- 8. graceful stop ---------------------------------------------------------------------------


def test_graceful_stop_under_load_leaves_no_active_job_and_resumes(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    """8. SIGTERM to the orchestrator under load; start again on the same data; all drains."""
    meta_rate, web_rate = _rates()
    bound = SHUTDOWN_TIMEOUT_S + KILL_GRACE_S + 3.0
    with scenario_timer("graceful stop") as timer, \
            ChaosSystem(tmp_path, database_url=database_url, redis_url=redis_url) as system:
        with LoadGenerator(system, meta_rate=meta_rate, wwebjs_rate=web_rate) as load:
            load.wait_acked(int(scaled(80, 25)))
            stopped: dict[str, float] = {}

            def _stop() -> int:
                code, seconds = system.stop_orchestrator(timeout=60)
                stopped.update(code=code, seconds=seconds)
                return system.run.proc.popen.pid if system.run.proc else 0

            fault = system.record_fault("sigterm", "orchestrator", _stop)
            left = leftover_jobs(system.redis_url)
            stop_event = system.run.events("orchestrator", "stop")[-1]["event_data"]
            log(f"orchestrator exited {stopped['code']} in {stopped['seconds']:.2f}s; killed "
                f"{stop_event.get('killed')}; left in Redis: {left or 'nothing'}")
            system.run.assert_nothing_left()
            pending = system.status_counts()
            time.sleep(1.0)  # down for a moment while the clients keep retrying
            restarted = time.monotonic()
            system.start_orchestrator()
            system.wait_healthy()
            system.pair_wwebjs()
            fault.recovered_s = round(time.monotonic() - fault.at, 2)
            up_s = time.monotonic() - restarted
            load.wait_acked(int(scaled(60, 20)))
        result = check(system, load, scenario="graceful stop", extra={
            "stop_s": round(stopped["seconds"], 2), "stop_bound_s": bound, "exit_code": stopped["code"],
            "killed": stop_event.get("killed") or [], "left_in_redis": left or {}, "restart_up_s": round(up_s, 2),
            "statuses_at_stop": pending})
        result.assert_ok()
        assert stopped["code"] == 0, stopped
        assert stopped["seconds"] <= bound, f"graceful stop took {stopped['seconds']:.2f}s > {bound}s"
        assert not stop_event.get("killed"), f"children had to be SIGKILLed: {stop_event}"
        assert not left, f"jobs left active/stalled/locked after a graceful stop: {left}"
    log(f"duration {timer['seconds']:.1f}s")


# --- 7. Redis and PostgreSQL restarted ----------------------------------------------------------


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[EmbeddedPostgres, EmbeddedRedis, str, str]]:
    """A PostgreSQL and a Valkey (append-only on) of this test's own, which it may restart."""
    pg = EmbeddedPostgres(tmp_path / "pg" / "data", database="chaos")
    valkey = EmbeddedRedis(tmp_path / "valkey")
    try:
        pg_handle = pg.ensure()
        redis_handle = valkey.ensure()
        pg.requested_port, valkey.requested_port = pg_handle.port, redis_handle.port  # same address on restart
        import asyncio

        asyncio.run(migrate(pg_handle.url))
        yield pg, valkey, pg_handle.url, redis_handle.url
    finally:
        valkey.stop()
        pg.stop()


def _restart(system: ChaosSystem, kind: str, stop: object, start: object, down_s: float) -> tuple[Fault, float]:
    """Stop a server, keep it down ``down_s``, start it again: (fault, wall clock when back)."""
    assert callable(stop) and callable(start)
    fault = system.record_fault("restart", kind, lambda: stop() and None)
    time.sleep(down_s)
    start()
    back = time.time()
    fault.recovered_s = round(time.monotonic() - fault.at, 2)
    log(f"{kind} back after {fault.recovered_s}s")
    return fault, back


def test_redis_and_postgres_restarted_under_load_lose_nothing(
        tmp_path: Path, own_servers: tuple[EmbeddedPostgres, EmbeddedRedis, str, str]) -> None:
    """7. Restart Redis, then PostgreSQL, under load: nothing acknowledged is lost; resumes ≤ 5 s."""
    pg, valkey, database_url, redis_url = own_servers
    meta_rate, web_rate = _rates()
    down_s = scaled(5, 2)
    with scenario_timer("Redis and PostgreSQL restarted") as timer, \
            ChaosSystem(tmp_path / "system", database_url=database_url, redis_url=redis_url) as system:
        with LoadGenerator(system, meta_rate=meta_rate, wwebjs_rate=web_rate, give_up_after=180) as load:
            load.wait_acked(int(scaled(80, 25)))
            _fault, redis_back = _restart(system, "redis", valkey.stop, valkey.ensure, down_s)
            redis_resumed = first_receipts_after(system, redis_back)
            load.wait_acked(int(scaled(60, 20)), timeout=90)
            _fault, pg_back = _restart(system, "postgres", pg.stop, pg.ensure, down_s)
            pg_resumed = first_receipts_after(system, pg_back)
            load.wait_acked(int(scaled(60, 20)), timeout=90)
        result = check(system, load, scenario="Redis and PostgreSQL restarted", extra={
            "down_s": down_s, "resume_after_redis_s": redis_resumed, "resume_after_postgres_s": pg_resumed,
            "error_answers": error_answers(load)})
        result.assert_ok()
        assert_no_server_errors(error_answers(load))
        failed = system.status_counts().get("failed", 0)
        assert failed == 0, f"{failed} message(s) failed: an outage used up their attempts"
        for name, resumed in (("redis", redis_resumed), ("postgres", pg_resumed)):
            assert max(resumed) <= RESUME_BOUND_S, f"processing resumed {resumed}s after {name} came back"
    log(f"duration {timer['seconds']:.1f}s")
