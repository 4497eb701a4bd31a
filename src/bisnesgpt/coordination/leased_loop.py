"""A periodic job that exactly one process runs at a time: take the lease, then do one pass.

Every process of a role runs the loop; each turn renews (or tries to take) the lease
and only the holder runs the pass. The lease lives ``ttl`` seconds (three intervals by
default, at least 10 s), so a holder that dies is replaced within about one ``ttl``; one
that stops releases the lease and a standby takes over at its next turn.
"""

from __future__ import annotations

from bisnesgpt.coordination.leases import Lease
from bisnesgpt.core.periodic import Periodic, RunOnce
from bisnesgpt.db.pool import Database


class LeasedLoop(Periodic):
    """``Periodic`` whose pass runs only while this process holds lease ``name``."""

    def __init__(self, db: Database, name: str, holder: str, interval: float, run_once: RunOnce, *,
                 ttl: float | None = None, first_delay: float = 0.0) -> None:
        super().__init__(name, interval, run_once, first_delay=first_delay)
        self.lease = Lease(db, name, holder, ttl if ttl is not None else max(3 * interval, 10.0))

    @property
    def held(self) -> bool:
        """Whether this process held the lease at its last turn."""
        return self.lease.held

    async def tick(self) -> bool:
        """Renew or take the lease; run the pass only while held."""
        if not await self.lease.try_acquire():
            return False
        return await super().tick()

    async def stop(self) -> None:
        """Stop the loop and release the lease for a standby."""
        await super().stop()
        await self.lease.release()
