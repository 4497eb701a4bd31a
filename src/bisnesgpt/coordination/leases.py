"""Named leases in PostgreSQL: "exactly one process at a time does X".

A lease has a holder and an expiry; the holder renews it well before expiry, anyone may
take it once expired. Used for the outbox reconciler, the maintenance and rollup jobs, the
webhook clean-up and wwebjs session ownership (many leases renewed in one statement).
PostgreSQL (not Redis) so it holds while Redis is restarting.

Every holder is written one way, ``<process>@<host>:<pid>:<nonce>`` (``holder_id``): the
nonce tells two runs of one pid apart, host and pid let a process on the same host see
that a holder is dead (kill -9) without waiting for its lease to expire.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import psutil

from bisnesgpt.core.errors import BisnesgptError, LeaseLost
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.coordination")


def holder_id(process_name: str) -> str:
    """This process's lease holder id (a new nonce per call: one per process run)."""
    return f"{process_name}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Holder:
    """A parsed holder id."""

    process_name: str
    host: str
    pid: int

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """``Holder`` of a ``holder_id`` string; None for anything else."""
        try:
            process, _, rest = text.partition("@")
            host, pid, _nonce = rest.rsplit(":", 2)
            return cls(process, host, int(pid))
        except ValueError:
            return None

    def is_dead_here(self) -> bool:
        """True when this holder ran on this host and its pid is gone (or a zombie)."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            return psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True


class LeaseStore:
    """The lease statements, for one name or many at once."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def acquire(self, names: Iterable[str], holder: str, ttl_seconds: float) -> set[str]:
        """Take or renew ``names`` for ``holder``; the names it holds afterwards."""
        return set(await self.acquire_epochs(names, holder, ttl_seconds))

    async def acquire_epochs(self, names: Iterable[str], holder: str, ttl_seconds: float) -> dict[str, int]:
        """Take or renew ``names`` for ``holder``; each name it holds afterwards with its tenure's epoch."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        rows = await self.db.fetch(SQL.acquire_leases, wanted, holder, float(ttl_seconds))
        return {str(r["name"]): int(r["epoch"]) for r in rows}

    @staticmethod
    async def fence(conn: asyncpg.Connection, name: str, holder: str, epoch: int) -> None:
        """Inside the caller's transaction: LeaseLost unless this tenure of ``name`` is still the live one.

        The lease row stays locked until that transaction ends (a takeover waits for the write).
        """
        if await conn.fetchval(SQL.lease_is_current, name, holder, epoch) is None:
            raise LeaseLost(f"lease {name} (epoch {epoch}) is no longer held by {holder}")

    async def holders(self, names: Iterable[str]) -> dict[str, str]:
        """The current (unexpired) holder of each of ``names`` that has one."""
        looked_up = sorted(set(names))
        if not looked_up:
            return {}
        return {str(r["name"]): str(r["holder"]) for r in await self.db.fetch(SQL.current_holders, looked_up)}

    async def release(self, names: Iterable[str], holder: str) -> None:
        """Delete those of ``names`` that ``holder`` holds."""
        listed = list(names)
        if listed:
            await self.db.execute(SQL.release_leases, listed, holder)


class Lease:
    """One named lease; ``held`` says whether this holder has it now."""

    def __init__(self, db: Database, name: str, holder: str, ttl_seconds: float) -> None:
        self.store = LeaseStore(db)
        self.name = name
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.held = False

    async def try_acquire(self) -> bool:
        """Take or renew the lease; False if someone else holds it or the DB is unreachable."""
        try:
            got = self.name in await self.store.acquire([self.name], self.holder, self.ttl_seconds)
        except BisnesgptError as exc:
            log.debug("lease %s: %s", self.name, exc.detail)
            got = False
        was_held, self.held = self.held, got
        if self.held and not was_held:
            log.info("lease %s acquired by %s", self.name, self.holder)
        elif was_held and not self.held:
            log.warning("lease %s lost by %s", self.name, self.holder)
        return self.held

    async def release(self) -> None:
        """Give the lease up now (a successor need not wait for it to expire)."""
        if not self.held:
            return
        self.held = False
        try:
            await self.store.release([self.name], self.holder)
        except BisnesgptError as exc:
            log.debug("lease %s release: %s", self.name, exc.detail)
