"""Admission control at the send edge: under overload answer 503 fast instead of in seconds.

Three gates, all answered with ``Overloaded`` (503 + ``Retry-After``) and counted:

- the database pool (``db.pool.Database(pool_wait=…)``, set for the api role from
  ``ADMISSION_POOL_WAIT``): a request that finds every connection busy waits at most that long;
- the event loop (here): a send that arrives while this process's loop runs more than
  ``ADMISSION_MAX_LOOP_LAG`` behind is refused before any database work, so the work already
  admitted finishes and the backlog shrinks instead of every request waiting longer;
- sends in flight (here): past ``ADMISSION_MAX_IN_FLIGHT`` sends being served by this process,
  the next is refused at once. By Little's law this bounds an admitted send's time in the
  process to about that many service times, and it reacts within one request, where the lag
  sample and the pool wait each need a bounded wait to notice overload first.

The last two are judged by ``AdmissionGate``, the outermost ASGI middleware of the api role:
a refused send costs no body read, JSON inspection, authentication or audit row, so refusing
stays cheap at any offered load and the capacity goes to the sends admitted.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from bisnesgpt.api.edge import route_family
from bisnesgpt.api.problems import error_response
from bisnesgpt.core.errors import Overloaded
from bisnesgpt.core.periodic import Periodic

SENDS_REFUSED = Counter("bisnesgpt_sends_refused_total",
                        "Sends refused (503 Overloaded) because the event loop lagged over ADMISSION_MAX_LOOP_LAG "
                        "or ADMISSION_MAX_IN_FLIGHT sends were already being served", ["reason"])

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


# The methods of the send routes (reads of messages share their paths and are never refused).
SEND_METHODS = frozenset({"POST", "PUT", "DELETE"})


class SendAdmission:
    """The send routes' gates, loop lag and sends in flight (0 turns each off); judged by ``AdmissionGate``."""

    def __init__(self, max_lag_seconds: float, lag: LoopLag, max_in_flight: int = 0) -> None:
        self.max_lag = max_lag_seconds
        self.lag = lag
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.refused = 0

    def _refuse(self, reason: str, detail: str) -> Overloaded:
        self.refused += 1
        SENDS_REFUSED.labels(reason).inc()
        return Overloaded(f"{detail}; retry after the Retry-After seconds, or run more instances (API_INSTANCES)")

    def check(self) -> None:
        """Raise ``Overloaded`` while the loop lags over its limit or the in-flight sends are at theirs."""
        if self.max_lag and self.lag.seconds > self.max_lag:
            raise self._refuse("loop_lag", f"this API process is {self.lag.seconds * 1000:.0f} ms behind (limit "
                                           f"{self.max_lag * 1000:.0f} ms, ADMISSION_MAX_LOOP_LAG)")
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            raise self._refuse("in_flight", f"this API process is already serving {self.in_flight} sends "
                                            f"(limit ADMISSION_MAX_IN_FLIGHT {self.max_in_flight})")


class AdmissionGate:
    """ASGI middleware: every send request passes ``admission`` before anything reads it; a
    refusal is the ``Overloaded`` problem (503 + ``Retry-After``), an admitted send holds an
    in-flight slot until its answer is sent."""

    def __init__(self, app: ASGIApp, admission: SendAdmission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Judge a send, pass everything else straight on."""
        if (scope["type"] != "http" or scope["method"] not in SEND_METHODS
                or route_family(scope["method"], scope["path"]) != "sends"):
            await self.app(scope, receive, send)
            return
        admission = self.admission
        try:
            admission.check()
        except Overloaded as exc:
            await error_response(exc)(scope, receive, send)
            return
        admission.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            admission.in_flight -= 1
