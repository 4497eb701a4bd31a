"""bullmq's ``Worker`` with the three changes this product relies on, and two script helpers.

``HandBackWorker`` is ``bullmq.Worker`` (python-bullmq 3.4.4, pinned) with:

* a sequential run loop (``run``), as Node BullMQ's: the Python port starts one fetch per
  free slot at once, so each job arriving at an idle worker with many slots cost one
  ``moveToActive`` per free slot, nearly all finding nothing;
* hand-back: jobs fetched but not started because the worker is closing, and jobs cut
  short at the drain deadline, go back to ``wait`` at once (``hand_back``) instead of
  lingering ``active`` until the stalled checker;
* lock renewal until the last job ends: bullmq's loop closes the lock manager as soon as
  it stops fetching, so a job still draining lost its lock after ``lockDuration``
  ("Missing lock … moveToDelayed") and was left ``active``; and a job untracked by an
  earlier run of the same id no longer stops the renewal of its new run.

These reach into bullmq's internals (attributes of ``Worker`` and ``LockManager``, the
``moveJobFromActiveToWait-9.lua`` script it ships); ``tests/unit/test_bullmq_internals.py``
pins every one of them, so a bullmq upgrade that moves them fails there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
from typing import Any

from bullmq import Job, Worker
from bullmq.redis_connection import loadScript
from bullmq.timer import Timer
from bullmq.utils import extract_result

log = logging.getLogger(__name__)

# bullmq ships this script (Node's Job.moveToWait uses it) but python-bullmq does not register it.
HAND_BACK_SCRIPT = "moveJobFromActiveToWait-9.lua"
HAND_BACK_KEYS = ("active", "wait", "stalled", "paused", "meta", "limiter", "prioritized", "marker", "events")

_RUN_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("bullmq_job_token")


async def promote(backend: Any, job_ids: list[str]) -> int:
    """Move delayed jobs to ``wait`` now; how many moved (one already running or done is skipped)."""
    moved = 0
    for job_id in job_ids:
        try:
            await backend.promote(job_id)
            moved += 1
        except TypeError as exc:  # bullmq's "not in the delayed state" / "missing key"
            log.debug("job %s not promoted: %s", job_id, exc)
    return moved


async def hand_back(worker: Any, job: Any, token: str) -> bool:
    """Move a job this worker holds from ``active`` back to ``wait`` (front of the queue)."""
    scripts = worker.backend.scripts
    keys = scripts.getKeys(list(HAND_BACK_KEYS))
    try:
        script = scripts.commands.get(HAND_BACK_SCRIPT)
        if script is None:
            script = scripts.commands[HAND_BACK_SCRIPT] = scripts.redisClient.register_script(
                loadScript(HAND_BACK_SCRIPT))
        result = await script(keys=keys, args=[job.id, token, scripts.toKey(job.id)])
    except Exception as exc:  # Redis gone: the lock expires and the stalled checker returns it
        log.warning("could not hand job %s back: %r", job.id, exc)
        return False
    if isinstance(result, int) and result < 0:
        log.warning("could not hand job %s back: bullmq error %d (no longer ours)", job.id, result)
        return False
    log.info("job %s handed back to wait (worker closing)", job.id)
    return True


class HandBackWorker(Worker):  # type: ignore[misc]
    """bullmq's Worker with a sequential run loop, hand-back on close and lasting lock renewal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        close_locks = self.lockManager.close

        async def close_when_idle() -> None:
            # bullmq calls this from its run loop (may still have jobs) and from close()'s
            # teardown (always after the jobs): only the idle call really stops renewing.
            if not self.jobs:
                await close_locks()

        self.lockManager.close = close_when_idle
        self.close_locks = close_locks
        untrack = self.lockManager.untrack_job

        def untrack_own(job_id: str) -> None:
            # bullmq untracks by job id alone: a job deferred (moved to delayed) and fetched
            # again at once is tracked anew under a new token before the old run's cleanup,
            # which then untracked the new run: its lock was no longer renewed and expired
            # ("Missing lock" on completion, job left active until the stalled checker).
            tracked = self.lockManager.tracked_jobs.get(job_id)
            if tracked is None or tracked.get("token") == _RUN_TOKEN.get(None):
                untrack(job_id)

        self.lockManager.untrack_job = untrack_own

    async def run(self) -> None:
        """bullmq's run loop with sequential fetching.

        Fetch while slots are free, starting each job as soon as it is fetched; a fetch that
        finds nothing marks the queue drained, so the next one becomes the single blocking
        wait (BZPOPMIN on the marker), parked while jobs run and collected like them.
        """
        if self.running:  # type: ignore[has-type]
            raise RuntimeError("Worker is already running")
        await self._ensure_client_names()
        self.lockManager.start()
        self.stalledCheckTimer = Timer(self.opts.get("stalledInterval") / 1000, self.runStalledJobsCheck, self.emit)
        self.running = True
        concurrency = int(self.opts.get("concurrency") or 1)
        retry_opts = {"delay_in_ms": self.opts.get("runRetryDelay"), "only_emit_error": True}
        fetches = itertools.count(1)
        try:
            while not self.closed:
                if self.paused and not self.closing:
                    await self.resume_event.wait()
                    continue
                started = self._start_fetched()
                while not self.waiting and len(self.processing) < concurrency and not self.closing \
                        and not self.paused:
                    token = f"{self.id}:{next(fetches)}"
                    fetch = asyncio.ensure_future(self.retryIfFailed(functools.partial(self.getNextJob, token),
                                                                     retry_opts))
                    self.processing.add(fetch)
                    await asyncio.sleep(0)  # let it start: it may have become the blocking wait
                    if self.waiting is not None and len(self.processing) > 1:
                        break  # parked; collected with the running jobs below
                    await asyncio.wait({fetch})
                    started += self._start_fetched()
                if self.closing and (started == 0 or not self.processing):
                    break
                if self.processing:
                    await asyncio.wait(self.processing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._after_run()

    async def _after_run(self) -> None:
        """As bullmq's: a loop ended other than by close() (cancelled) leaves nothing running."""
        self.running = False
        if not self.closing:
            for task in self.processing:
                task.cancel()
            if self.waiting and not self.waiting.done():
                self.waiting.cancel()
            if self.processing:
                await asyncio.gather(*self.processing, return_exceptions=True)
            self.processing.clear()
        if self.stalledCheckTimer is not None:
            with contextlib.suppress(Exception):
                self.stalledCheckTimer.stop()
        await self.lockManager.close()

    def _start_fetched(self) -> int:
        """Forget finished tasks; start the jobs that finished fetches brought. How many started."""
        started = 0
        for task in [t for t in self.processing if t.done()]:
            self.processing.discard(task)
            if task.cancelled():
                continue
            result = extract_result(task, self.emit)
            if isinstance(result, Job):
                self.processing.add(asyncio.ensure_future(self.processJob(result, result.token)))
                started += 1
        return started

    async def getNextJob(self, token: str) -> Any:
        """bullmq's fetch; a job fetched while close() began is handed back at once."""
        job = await super().getNextJob(token)
        if job is not None and self.closing:
            # Fetched while close() began: the run loop may already have stopped collecting.
            await hand_back(self, job, token)
            return None
        return job

    async def processJob(self, job: Any, token: str) -> Any:
        """bullmq's job run; a job cut short at the drain deadline goes back to ``wait``."""
        _RUN_TOKEN.set(token)  # each job runs in a task of its own: this context is the job's
        if self.closing:
            # Moved to active by a fetch that raced with close(): never started, give it back.
            await hand_back(self, job, token)
            return None
        try:
            return await super().processJob(job, token)
        except asyncio.CancelledError:
            if self.forceClosing:  # cut short at the drain deadline: back to wait, not stalled
                await asyncio.shield(hand_back(self, job, token))
            raise
