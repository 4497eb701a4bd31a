"""Session ownership: one lease per session in ``process_leases``, acquired and renewed in bulk.

A wwebjs process drives a session only while it holds that session's lease; the lease is
renewed every reconcile tick (the lease statements of ``coordination.leases``, for all its
sessions at once) and the process stops driving a session on its own once its last
successful renewal is older than ``ttl - margin`` (so a process cut off from PostgreSQL
lets go before anyone else can take over). A lease whose holder ran on this host and whose
pid is gone (kill -9) is taken over at once instead of waiting for it to expire.

Fencing: each tenure of a lease has an epoch (migration 0023). ``fence`` is called inside the
transaction of every write the lease protects (the session's status, credentials, desired
state), before every send and in the transaction recording a send's failure (the shared
send worker's ``OutcomeFence``: a fenced-out owner defers the job to the new owner instead of
failing it; ``sent`` is recorded unfenced, since the message did leave): it fails
(``LeaseLost``) unless this process may still act on the lease by its own clock *and* the row
still names this holder and epoch — so an owner frozen (SIGSTOP) or cut off past its lease
writes nothing over its successor when it resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import asyncpg

from bisnesgpt.coordination.leases import Holder, LeaseStore
from bisnesgpt.core.errors import BisnesgptError, LeaseLost
from bisnesgpt.db.pool import Database

log = logging.getLogger(__name__)


class SessionLeases:
    """The session leases of one process: which it holds, until when it may act on each."""

    def __init__(self, db: Database, holder: str, ttl_seconds: float, *, takeover_same_host: bool = True) -> None:
        self.store = LeaseStore(db)
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.takeover_same_host = takeover_same_host
        # name -> monotonic time until which we may act on it (renewal time + ttl - margin)
        self._valid_until: dict[str, float] = {}
        # name -> the epoch of this process's current tenure (its fencing token)
        self.epochs: dict[str, int] = {}
        # name -> the other holder, as last seen (for /health "standby")
        self.others: dict[str, str] = {}

    @property
    def margin(self) -> float:
        """How long before expiry this process stops acting on a lease it could not renew."""
        return max(1.0, self.ttl_seconds / 4)

    def held(self, name: str) -> bool:
        """Whether this process may drive the session of lease ``name`` now."""
        return self._valid_until.get(name, 0.0) > time.monotonic()

    def held_names(self) -> list[str]:
        """The leases this process may act on now."""
        now = time.monotonic()
        return [name for name, until in self._valid_until.items() if until > now]

    async def acquire(self, names: Iterable[str], *, observe: Iterable[str] = ()) -> set[str]:
        """Take or renew the leases of ``names``; the set actually held afterwards.

        ``observe`` names are only looked up (who holds them), for the standby report.
        """
        wanted = sorted(set(names))
        looked_up = sorted(set(wanted) | set(observe))
        if not looked_up:
            return set()
        started = time.monotonic()
        try:
            if self.takeover_same_host and wanted:
                await self._drop_dead_holders(wanted)
            epochs = await self.store.acquire_epochs(wanted, self.holder, self.ttl_seconds)
            got = set(epochs)
            holders = await self.store.holders(looked_up)
        except BisnesgptError as exc:
            log.warning("session leases not renewed: %s", exc.detail)
            return {n for n in wanted if self.held(n)}
        until = started + self.ttl_seconds - self.margin
        for name in wanted:
            if name in got:
                if self._valid_until.get(name, 0.0) <= time.monotonic():
                    log.info("lease %s acquired by %s (epoch %d)", name, self.holder, epochs[name])
                self._valid_until[name] = until
                self.epochs[name] = epochs[name]
            else:
                self.epochs.pop(name, None)
                if self._valid_until.pop(name, 0.0) > time.monotonic():
                    log.warning("lease %s lost by %s", name, self.holder)
        self.others = {name: holder for name, holder in holders.items() if holder != self.holder}
        return got

    async def _drop_dead_holders(self, names: list[str]) -> None:
        for name, text in (await self.store.holders(names)).items():
            holder = Holder.parse(text)
            if text != self.holder and holder is not None and holder.is_dead_here():
                await self.store.release([name], text)
                log.warning("lease %s: holder %s is dead (pid %d gone); taking over", name, text, holder.pid)

    async def fence(self, conn: asyncpg.Connection, name: str) -> None:
        """Inside a write's transaction: LeaseLost unless this process still holds ``name`` (its
        clock and the lease row, this tenure's epoch); the row stays locked until the commit."""
        epoch = self.epochs.get(name)
        if epoch is None or not self.held(name):
            raise LeaseLost(f"lease {name} is not held by {self.holder} any more")
        await LeaseStore.fence(conn, name, self.holder, epoch)

    def forget(self, names: Iterable[str]) -> None:
        """Stop acting on these leases (without releasing them)."""
        for name in names:
            self._valid_until.pop(name, None)
            self.epochs.pop(name, None)

    async def release(self, names: Iterable[str]) -> None:
        """Give these leases up now, for a successor."""
        listed = list(names)
        self.forget(listed)
        if not listed:
            return
        try:
            await self.store.release(listed, self.holder)
        except BisnesgptError as exc:
            log.debug("release of %d leases failed: %s", len(listed), exc.detail)
