"""Pins every bullmq internal that ``infra/bullmq_worker.py`` and ``messaging/queue_worker.py``
reach into, so a bullmq upgrade that moves one fails here, by name, before anything subtle.

Nothing here talks to Redis: a worker is constructed without running (``autorun: False``)
and looked at.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import bullmq
import pytest
from bullmq import Job, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError
from bullmq.lock_manager import LockManager
from bullmq.redis_connection import loadScript
from bullmq.timer import Timer
from bullmq.utils import extract_result

from bisnesgpt.infra.bullmq_worker import HAND_BACK_KEYS, HAND_BACK_SCRIPT, HandBackWorker

pytestmark = pytest.mark.unit


async def _noop(_job: Any, _token: str) -> None:
    return None


@pytest.fixture
def worker() -> Iterator[Worker]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield HandBackWorker("pinned", _noop, {"connection": {"host": "127.0.0.1", "port": 1}, "autorun": False,
                                               "concurrency": 3, "stalledInterval": 2000, "lockDuration": 5000})
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_the_pinned_version_is_the_one_installed() -> None:
    assert bullmq.__version__ == "3.4.4", "re-check every pin in this file before moving the bullmq pin"


def test_worker_state_the_run_loop_and_close_use(worker: Worker) -> None:
    for name, kind in [("processing", set), ("jobs", set), ("resume_event", asyncio.Event), ("opts", dict)]:
        assert isinstance(getattr(worker, name), kind), name
    for flag in ("closing", "forceClosing", "running", "paused", "closed", "drained"):
        assert isinstance(getattr(worker, flag), bool), flag
    assert worker.waiting is None
    assert worker.opts["concurrency"] == 3 and worker.opts["stalledInterval"] == 2000
    assert isinstance(worker.id, str)
    for method in ("getNextJob", "processJob", "retryIfFailed", "runStalledJobsCheck", "_ensure_client_names",
                   "close", "emit", "on", "run"):
        assert callable(getattr(worker, method)), method
    assert "force" in inspect.signature(worker.close).parameters
    assert set(inspect.signature(Worker.retryIfFailed).parameters) >= {"fn", "opts"}


def test_lock_manager_members_and_tracked_job_shape(worker: Worker) -> None:
    manager = worker.lockManager
    assert isinstance(manager, LockManager)
    assert isinstance(manager.tracked_jobs, dict)
    # HandBackWorker replaced these two with its own wrappers and kept bullmq's close.
    assert manager.close is not LockManager.close and callable(worker.close_locks)
    assert callable(manager.untrack_job) and callable(manager.track_job) and callable(manager.start)
    manager.track_job("job-1", "token-1", 0)
    assert manager.tracked_jobs["job-1"]["token"] == "token-1"


def test_backend_connections_and_scripts(worker: Worker) -> None:
    backend = worker.backend
    for connection in (backend.connection, backend.blocking_connection):
        assert callable(connection.getRedisVersion)
        assert callable(connection.conn.set_retry)
    scripts = backend.scripts
    assert callable(scripts.getKeys) and callable(scripts.toKey) and callable(scripts.promote)
    assert isinstance(scripts.commands, dict)
    assert callable(scripts.redisClient.register_script)
    assert len(scripts.getKeys(list(HAND_BACK_KEYS))) == 9


def test_the_hand_back_script_ships_with_bullmq_and_takes_our_keys() -> None:
    source = loadScript(HAND_BACK_SCRIPT)
    header = source.split("]]", 1)[0]
    keys = [line.split()[-2] for line in header.splitlines() if line.strip().startswith("KEYS[")]
    assert keys == [*HAND_BACK_KEYS[:-1], "event"], keys  # bullmq calls the events key "event key"
    assert "ARGV[1] job id" in header and "ARGV[2] lock token" in header and "ARGV[3] job id key" in header


def test_helpers_and_job_members_used() -> None:
    assert list(inspect.signature(Timer.__init__).parameters)[1:4] == ["interval", "callback", "emit_callback"]
    assert list(inspect.signature(extract_result).parameters) == ["job_task", "emit_callback"]
    for member in ("moveToDelayed", "updateData", "promote"):
        assert callable(getattr(Job, member)), member
    assert list(inspect.signature(Job.moveToDelayed).parameters)[1:] == ["timestamp", "token"]
    assert issubclass(DelayedError, Exception) and issubclass(UnrecoverableError, Exception)
