"""Faults the sandbox network asks the driver to act out inside the wwebjs process.

These reproduce what went wrong with the original browser-based sessions, where the damage
was in our own process rather than on the network: sends that crawl (``slow_sends``), a
process whose memory grows until something restarts it (``memory_growth``), and an event
loop that blocks (``freeze``). ``clear`` undoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bisnesgpt.core.jsontypes import JsonObject, JsonValue

log = logging.getLogger(__name__)

MB = 1 << 20


class DriverFaults:
    """Process-wide (like the leaks they imitate), shared by every session of the driver."""

    def __init__(self) -> None:
        self.slow_ms = 0
        self.ballast: list[bytes] = []
        self._grower: asyncio.Task[None] | None = None

    @property
    def ballast_mb(self) -> float:
        """How much memory the ``memory_growth`` fault holds now."""
        return sum(len(b) for b in self.ballast) / MB

    def apply(self, fault: str, params: JsonObject) -> None:
        """Act out ``fault`` (``slow_sends``, ``memory_growth``, ``freeze``, ``clear``) with its ``params``."""
        if fault == "slow_sends":
            self.slow_ms = max(0, int(_number(params.get("delayMs"), 0)))
            log.warning("sandbox fault: every send now takes %d ms longer", self.slow_ms)
        elif fault == "memory_growth":
            rate = _number(params.get("mbPerSecond"), 50)
            limit = _number(params.get("maxMb"), 1024)
            if self._grower is not None:
                self._grower.cancel()
            self._grower = asyncio.create_task(self._grow(rate, limit), name="sandbox-fault-memory")
            log.warning("sandbox fault: memory grows by %.1f MB/s up to %.0f MB", rate, limit)
        elif fault == "freeze":
            seconds = _number(params.get("seconds"), 5)
            log.warning("sandbox fault: blocking the event loop for %.1f s", seconds)
            time.sleep(seconds)  # deliberately blocking: this is the fault
        elif fault == "clear":
            self.clear()

    async def _grow(self, mb_per_second: float, max_mb: float) -> None:
        step = max(1, int(mb_per_second * MB / 10))
        while self.ballast_mb + step / MB <= max_mb:
            self.ballast.append(b"\xa5" * step)  # written, so the pages are really resident
            await asyncio.sleep(0.1)

    async def before_send(self) -> None:
        """Where ``slow_sends`` makes a send wait."""
        if self.slow_ms:
            await asyncio.sleep(self.slow_ms / 1000)

    def clear(self) -> None:
        """Undo every fault (sends at full speed, the ballast released)."""
        self.slow_ms = 0
        if self._grower is not None:
            self._grower.cancel()
            self._grower = None
        self.ballast.clear()

    async def close(self) -> None:
        """Stop growing and release the ballast (the driver is closing)."""
        if self._grower is not None:
            self._grower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._grower
        self.clear()


def _number(value: JsonValue, default: float) -> float:
    """A fault parameter as a number; ``default`` when it is missing, zero or not a number."""
    if isinstance(value, str | int | float) and value:
        return float(value)
    return default
