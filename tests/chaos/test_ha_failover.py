"""Highly available Redis and PostgreSQL under load: a Sentinel failover, a standby promoted.

The whole system (``ChaosSystem``: orchestrator, api, wwebjs, meta, the sandboxes) runs on

* a Sentinel deployment (master, replica, three sentinels; ``REDIS_URL=redis+sentinel://…``)
  whose master is killed with ``kill -9`` — the sentinels promote the replica, and every
  process must follow it;
* a PostgreSQL primary and its streaming standby (``DATABASE_URL`` naming both) — the
  primary is stopped and the standby promoted; every process must find the new primary.

Load runs through it all along; the checker then proves that nothing acknowledged was lost
(a job the old Redis master took but never replicated comes back from the outbox, since the
202 came only after the PostgreSQL commit) and that processing resumed within 10 s of the
failover.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.chaos import ChaosSystem, LoadGenerator, check, first_receipts_after, log, scaled, scenario_timer
from tests.support.pg_standby import PrimaryStandby
from tests.support.sentinel import SentinelDeployment

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

RESUME_BOUND_S = 10.0


def _rates() -> tuple[float, float]:
    return scaled(20, 8), scaled(8, 4)


def test_redis_sentinel_failover_under_load_loses_nothing(tmp_path: Path, database_url: str) -> None:
    meta_rate, web_rate = _rates()
    with SentinelDeployment(tmp_path) as redis_ha, scenario_timer("Redis Sentinel failover") as timer, \
            ChaosSystem(tmp_path / "system", database_url=database_url, redis_url=redis_ha.url) as system:
        with LoadGenerator(system, meta_rate=meta_rate, wwebjs_rate=web_rate, give_up_after=180) as load:
            load.wait_acked(int(scaled(80, 25)))
            killed: list[int] = []
            system.record_fault("kill -9", "redis master", lambda: killed.append(redis_ha.kill_master()))
            failover_s = redis_ha.wait_failover(killed[0])
            failed_over = time.time()
            log(f"sentinels promoted the replica {failover_s:.1f}s after the kill")
            resumed = first_receipts_after(system, failed_over)
            load.wait_acked(int(scaled(60, 20)), timeout=90)
        result = check(system, load, scenario="Redis Sentinel failover", extra={
            "failover_s": round(failover_s, 2), "resume_after_failover_s": resumed})
        result.assert_ok()
        assert max(resumed) <= RESUME_BOUND_S, f"processing resumed {resumed}s after the failover"
    log(f"duration {timer['seconds']:.1f}s")


def test_postgres_standby_promoted_under_load_loses_nothing(tmp_path: Path, redis_url: str) -> None:
    meta_rate, web_rate = _rates()
    with PrimaryStandby(tmp_path / "pg") as pg, scenario_timer("PostgreSQL promotion") as timer, \
            ChaosSystem(tmp_path / "system", database_url=pg.url, redis_url=redis_url) as system:
        with LoadGenerator(system, meta_rate=meta_rate, wwebjs_rate=web_rate, give_up_after=180) as load:
            load.wait_acked(int(scaled(80, 25)))
            promote_s: list[float] = []
            system.record_fault("stop + promote", "postgres primary", lambda: promote_s.append(pg.fail_over()))
            promoted = time.time()
            log(f"standby promoted {promote_s[0]:.1f}s after the primary began to stop")
            resumed = first_receipts_after(system, promoted)
            load.wait_acked(int(scaled(60, 20)), timeout=90)
        result = check(system, load, scenario="PostgreSQL promotion", extra={
            "promote_s": round(promote_s[0], 2), "resume_after_promotion_s": resumed})
        result.assert_ok()
        assert max(resumed) <= RESUME_BOUND_S, f"processing resumed {resumed}s after the promotion"
    log(f"duration {timer['seconds']:.1f}s")
