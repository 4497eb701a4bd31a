"""Delayed jobs waiting for a condition (a session becoming ready), promoted when it holds.

A wwebjs job deferred because its session is not ready waits with a backoff that grows with
the message's age (so thousands of messages for a phone that is down for hours do not churn
the queue). When the session comes up, waiting out that backoff would leave messages idle
for up to a minute: the worker notes each such job under its condition, and whoever learns
that the condition holds (the session manager) calls ``wake``, which returns the jobs to
promote at once. In memory only: after a restart the jobs simply wait out their delay.
"""

from __future__ import annotations

import math
import time

# Per condition; beyond it further jobs just wait out their delay (bounded memory).
MAX_JOBS_PER_CONDITION = 10_000


class Wakeups:
    """The delayed jobs of one worker, by the condition each waits for (see the module docstring)."""

    def __init__(self, max_jobs_per_condition: int = MAX_JOBS_PER_CONDITION) -> None:
        self.max_jobs = max_jobs_per_condition
        self._jobs: dict[str, set[str]] = {}
        self._woken_at: dict[str, float] = {}

    def note(self, condition: str, job_id: str, checked_at: float) -> bool:
        """Remember a job delayed until ``condition``; True if it already held after ``checked_at``
        (the moment the job saw it not holding): then the caller promotes the job itself."""
        if self._woken_at.get(condition, -math.inf) >= checked_at:
            return True
        jobs = self._jobs.setdefault(condition, set())
        if len(jobs) < self.max_jobs:
            jobs.add(job_id)
        return False

    def wake(self, condition: str) -> list[str]:
        """The condition holds now: the jobs noted for it (forgotten here)."""
        self._woken_at[condition] = time.monotonic()
        return sorted(self._jobs.pop(condition, ()))

    def waiting(self, condition: str) -> int:
        """How many jobs are noted for ``condition`` now."""
        return len(self._jobs.get(condition, ()))
