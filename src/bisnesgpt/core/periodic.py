"""The one periodic-job helper: run a pass every ``interval`` seconds, survive its failures.

Every recurring job of a process is a ``Periodic`` (or a ``LeasedLoop``, the same loop
run only by the holder of a lease: ``coordination/leased_loop.py``); their intervals are
settings (``bisnesgpt.config``), so how often anything runs is read in one place. A pass that
raises is logged (once per distinct error, then at DEBUG while it repeats) and the loop
goes on; a pass that returns ``True`` ("more to do now") runs again without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# What a pass may meet while a dependency is away: logged without a traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (BisnesgptError, RedisError, OSError, TimeoutError)

RunOnce = Callable[[], Awaitable[bool | None]]


def describe_error(exc: BaseException) -> str:
    """A one-line description of a pass's failure (a product error's ``detail``)."""
    if isinstance(exc, BisnesgptError):
        return exc.detail
    return str(exc) or type(exc).__name__


class Periodic:
    """Runs ``run_once`` every ``interval`` seconds in a task of its own, until stopped."""

    def __init__(self, name: str, interval: float, run_once: RunOnce, *, first_delay: float = 0.0) -> None:
        self.name = name
        self.interval = interval
        self.run_once = run_once
        self.first_delay = first_delay
        self.runs = 0
        self.last_run_at: float | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop's task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin the loop (the first pass after ``first_delay``)."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has ended (a pass in progress is cut short)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        if self.first_delay > 0:
            await asyncio.sleep(self.first_delay)
        while True:
            again = False
            try:
                again = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
            if not again:
                await asyncio.sleep(self.interval)

    async def tick(self) -> bool:
        """One turn of the loop: the pass; True when it asks to run again at once."""
        more = await self.run_once()
        self.runs += 1
        self.last_run_at = time.time()
        self.last_error = None
        return more is True

    def _failed(self, exc: Exception) -> None:
        detail = describe_error(exc)
        if detail == self.last_error:
            log.debug("%s: pass failed again: %s", self.name, detail)
        elif isinstance(exc, EXPECTED_ERRORS):
            log.warning("%s: pass failed: %s (retrying)", self.name, detail)
        else:
            log.exception("%s: pass failed (retrying)", self.name)
        self.last_error = detail
