"""Named leases in PostgreSQL: "exactly one process at a time does X".

A lease has a holder and an expiry; the holder renews it well before expiry, anyone may
take it once expired. Used for the outbox reconciler, the cleanup scheduler and wwebjs
session ownership. PostgreSQL (not Redis) so it holds while Redis is restarting.
"""

from __future__ import annotations

import logging

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database

log = logging.getLogger(__name__)

ACQUIRE_LEASE = """
INSERT INTO process_leases (name, holder, acquired_at, expires_at)
VALUES ($1, $2, now(), now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    acquired_at = CASE WHEN process_leases.holder = EXCLUDED.holder
                       THEN process_leases.acquired_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE process_leases.holder = EXCLUDED.holder OR process_leases.expires_at < now()
RETURNING holder
"""
RELEASE_LEASE = "DELETE FROM process_leases WHERE name = $1 AND holder = $2"
LEASE_HOLDER = "SELECT holder, expires_at FROM process_leases WHERE name = $1 AND expires_at > now()"


class Lease:
    """Acquire-or-renew in one statement; ``held`` says whether this holder has it now."""

    def __init__(self, db: Database, name: str, holder: str, ttl_seconds: float) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.held = False

    async def try_acquire(self) -> bool:
        """Take or renew the lease; False if someone else holds it or the DB is unreachable."""
        try:
            row = await self.db.fetchrow(ACQUIRE_LEASE, self.name, self.holder, float(self.ttl_seconds))
        except BisnesgptError as exc:
            log.debug("lease %s: %s", self.name, exc.detail)
            row = None
        was_held, self.held = self.held, row is not None
        if self.held and not was_held:
            log.info("lease %s acquired by %s", self.name, self.holder)
        elif was_held and not self.held:
            log.warning("lease %s lost by %s", self.name, self.holder)
        return self.held

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            await self.db.execute(RELEASE_LEASE, self.name, self.holder)
        except BisnesgptError as exc:
            log.debug("lease %s release: %s", self.name, exc.detail)
