"""Session ownership: one lease per session in ``process_leases``, acquired and renewed in bulk.

A wwebjs process drives a session only while it holds that session's lease; the lease is
renewed every reconcile tick and the process stops driving a session on its own once its
last successful renewal is older than ``ttl - margin`` (so a process cut off from
PostgreSQL lets go before anyone else can take over). Holders are
``<process>@<host>:<pid>:<nonce>``: a lease whose holder ran on this host and whose pid is
gone (kill -9) is taken over at once instead of waiting for it to expire.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database

log = logging.getLogger(__name__)

ACQUIRE_MANY = """
INSERT INTO process_leases (name, holder, acquired_at, expires_at)
SELECT name, $2, now(), now() + make_interval(secs => $3) FROM unnest($1::text[]) AS t(name)
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    acquired_at = CASE WHEN process_leases.holder = EXCLUDED.holder
                       THEN process_leases.acquired_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE process_leases.holder = EXCLUDED.holder OR process_leases.expires_at < now()
RETURNING name
"""
CURRENT_HOLDERS = """
SELECT name, holder, expires_at FROM process_leases WHERE name = ANY($1::text[]) AND expires_at > now()
"""
DROP_DEAD_HOLDER = "DELETE FROM process_leases WHERE name = $1 AND holder = $2"
RELEASE_MANY = "DELETE FROM process_leases WHERE name = ANY($1::text[]) AND holder = $2"
HOLDER_OF = "SELECT holder, expires_at FROM process_leases WHERE name = $1 AND expires_at > now()"


@dataclass(frozen=True)
class Holder:
    process_name: str
    host: str
    pid: int

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            process, _, rest = text.partition("@")
            host, pid, _nonce = rest.rsplit(":", 2)
            return cls(process, host, int(pid))
        except ValueError:
            return None


def make_holder(process_name: str) -> str:
    return f"{process_name}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class SessionLeases:
    def __init__(self, db: Database, holder: str, ttl_seconds: float, *, takeover_same_host: bool = True) -> None:
        self.db = db
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.takeover_same_host = takeover_same_host
        self.host = socket.gethostname()
        # name -> monotonic time until which we may act on it (renewal time + ttl - margin)
        self._valid_until: dict[str, float] = {}
        # name -> the other holder, as last seen (for /health "standby")
        self.others: dict[str, str] = {}

    @property
    def margin(self) -> float:
        return max(1.0, self.ttl_seconds / 4)

    def held(self, name: str) -> bool:
        return self._valid_until.get(name, 0.0) > time.monotonic()

    def held_names(self) -> list[str]:
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
            rows = await self.db.fetch(ACQUIRE_MANY, wanted, self.holder, float(self.ttl_seconds)) if wanted else []
            holders = await self.db.fetch(CURRENT_HOLDERS, looked_up)
        except BisnesgptError as exc:
            log.warning("session leases not renewed: %s", exc.detail)
            return {n for n in wanted if self.held(n)}
        got = {r["name"] for r in rows}
        until = started + self.ttl_seconds - self.margin
        for name in wanted:
            if name in got:
                if self._valid_until.get(name, 0.0) <= time.monotonic():
                    log.info("lease %s acquired by %s", name, self.holder)
                self._valid_until[name] = until
            elif self._valid_until.pop(name, 0.0) > time.monotonic():
                log.warning("lease %s lost by %s", name, self.holder)
        self.others = {r["name"]: r["holder"] for r in holders if r["holder"] != self.holder}
        return got

    async def _drop_dead_holders(self, names: list[str]) -> None:
        for row in await self.db.fetch(CURRENT_HOLDERS, names):
            holder = Holder.parse(row["holder"])
            if (row["holder"] != self.holder and holder is not None and holder.host == self.host
                    and holder.pid != os.getpid() and not _pid_alive(holder.pid)):
                await self.db.execute(DROP_DEAD_HOLDER, row["name"], row["holder"])
                log.warning("lease %s: holder %s is dead (pid %d gone); taking over", row["name"], row["holder"],
                            holder.pid)

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self._valid_until.pop(name, None)

    async def release(self, names: Iterable[str]) -> None:
        names = list(names)
        self.forget(names)
        if not names:
            return
        try:
            await self.db.execute(RELEASE_MANY, names, self.holder)
        except BisnesgptError as exc:
            log.debug("release of %d leases failed: %s", len(names), exc.detail)

    async def holder_of(self, name: str) -> str | None:
        row = await self.db.fetchrow(HOLDER_OF, name)
        return str(row["holder"]) if row else None
