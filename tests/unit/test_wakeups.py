"""Jobs waiting for a condition: noted, handed out once when it holds, never lost to a race."""

from __future__ import annotations

import time

import pytest

from bisnesgpt.messaging.wakeups import Wakeups

pytestmark = pytest.mark.unit


def test_wake_hands_out_the_noted_jobs_once() -> None:
    wakeups = Wakeups()
    checked = time.monotonic()
    assert wakeups.note("ready:a:0", "j2", checked) is False
    assert wakeups.note("ready:a:0", "j1", checked) is False
    assert wakeups.note("ready:a:0", "j1", checked) is False  # a job deferred twice is noted once
    assert wakeups.note("ready:b:0", "j3", checked) is False
    assert wakeups.waiting("ready:a:0") == 2
    assert wakeups.wake("ready:a:0") == ["j1", "j2"]
    assert wakeups.wake("ready:a:0") == []
    assert wakeups.waiting("ready:b:0") == 1


def test_a_job_that_saw_the_condition_false_before_it_came_true_is_promoted_by_its_worker() -> None:
    wakeups = Wakeups()
    checked = time.monotonic()  # the job found the session not ready here ...
    wakeups.wake("ready:a:0")  # ... the session became ready before the job was noted
    assert wakeups.note("ready:a:0", "late", checked) is True
    assert wakeups.waiting("ready:a:0") == 0
    # A job that checks after the wakeup (the session went down again) waits for the next one.
    assert wakeups.note("ready:a:0", "next", time.monotonic()) is False
    assert wakeups.wake("ready:a:0") == ["next"]


def test_memory_is_bounded_per_condition() -> None:
    wakeups = Wakeups(max_jobs_per_condition=3)
    checked = time.monotonic()
    for n in range(10):
        wakeups.note("ready:a:0", f"j{n}", checked)
    assert wakeups.wake("ready:a:0") == ["j0", "j1", "j2"]
