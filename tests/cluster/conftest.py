"""The small cluster run (``make test``, ``CHAOS_SCALE`` < 1) keeps to CI's budget.

It runs the spread and kill -9 scenarios; the partition (its timing margins are the full run's
20 s lease, not the small run's 8 s), the join and the rolling restart (each another host
start-up or four on this machine) and the Redis / PostgreSQL failovers (the full run's data
host is the highly available one) run in ``make test-cluster`` only. They are deselected here,
not skipped: nothing of theirs ran.
"""

from __future__ import annotations

import pytest

from tests.support.chaos import CHAOS_SCALE

FULL_ONLY = ("test_3_partition_of_one_host_never_two_drivers", "test_4_rolling_restart_of_every_host",
             "test_5_a_fourth_host_joins_and_takes_its_share",
             "test_6_redis_sentinel_failover_and_postgres_promotion")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the full-run-only scenarios out of a small run."""
    if CHAOS_SCALE >= 1.0:
        return
    left_out = [item for item in items if item.name in FULL_ONLY]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
