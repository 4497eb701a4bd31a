"""Stopping background tasks for sure.

``task.cancel()`` is a request: a library that catches the ``CancelledError`` at the wrong
moment (a driver converting it into its own error, a retry loop) lets the task run on, and
``await task`` then waits forever. ``cancel_and_wait`` repeats the request until the task
ends, and gives up with an error log after a deadline instead of hanging a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, timeout: float = 10.0, interval: float = 0.5) -> bool:
    """Cancel ``task`` and wait until it has ended; True if it did within ``timeout`` seconds."""
    if task is None or task is asyncio.current_task():
        return True
    deadline = time.monotonic() + timeout
    while not task.done():
        task.cancel()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("task %s did not stop within %.1f s of being cancelled", task.get_name(), timeout)
            return False
        await asyncio.wait({task}, timeout=min(interval, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())
    return True
