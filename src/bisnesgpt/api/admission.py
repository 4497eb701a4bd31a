"""Admission control at the send edge: under overload answer 503 fast instead of in seconds.

Two gates, both answered with ``Overloaded`` (503 + ``Retry-After``) and counted:

- the database pool (``db.pool.Database(pool_wait=…)``, set for the api role from
  ``ADMISSION_POOL_WAIT``): a request that finds every connection busy waits at most that long;
- the event loop (here): a send that arrives while this process's loop runs more than
  ``ADMISSION_MAX_LOOP_LAG`` behind is refused before any database work, so the work already
  admitted finishes and the backlog shrinks instead of every request waiting longer.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from bisnesgpt.core.errors import Overloaded
from bisnesgpt.core.periodic import Periodic

SENDS_REFUSED = Counter("bisnesgpt_sends_refused_total",
                        "Sends refused (503 Overloaded) because the event loop lagged over ADMISSION_MAX_LOOP_LAG")

# How often the loop's lateness is sampled: often enough to react within a fraction of the limit.
LAG_SAMPLE_SECONDS = 0.05


class LoopLag:
    """How late this process's event loop runs, sampled every ``LAG_SAMPLE_SECONDS``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.periodic = Periodic("event-loop-lag", LAG_SAMPLE_SECONDS, self._sample)

    async def _sample(self) -> bool:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(LAG_SAMPLE_SECONDS)
        self.seconds = max(0.0, loop.time() - began - LAG_SAMPLE_SECONDS)
        return True  # the sleep above is the interval


class SendAdmission:
    """The event-loop gate of the send routes (a router dependency); ``max_lag`` 0 admits everything."""

    def __init__(self, max_lag_seconds: float, lag: LoopLag) -> None:
        self.max_lag = max_lag_seconds
        self.lag = lag
        self.refused = 0

    async def __call__(self) -> None:
        """FastAPI dependency: raise ``Overloaded`` while the loop lags over the limit."""
        if self.max_lag and self.lag.seconds > self.max_lag:
            self.refused += 1
            SENDS_REFUSED.inc()
            raise Overloaded(f"this API process is {self.lag.seconds * 1000:.0f} ms behind (limit "
                             f"{self.max_lag * 1000:.0f} ms, ADMISSION_MAX_LOOP_LAG); retry after the "
                             "Retry-After seconds, or run more instances (API_INSTANCES)")
