"""This process's place in the fleet of wwebjs processes that share the sessions.

``SessionFleet`` keeps the process's ``wwebjs_members`` row alive (each reconcile tick), reads
the live members, leaves out those that ran on this host and are dead (their sessions are
taken over at once, as their leases are), computes this tick's share (``balance.plan``),
wakes the other processes when sessions were released for them, and leaves the fleet when
the process stops. The session manager decides what to do with the share.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis.asyncio as aioredis

from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import PROCESS_MESSAGE, publish
from bisnesgpt.coordination.leases import Holder
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs import store
from bisnesgpt.engines.wwebjs.balance import Member, Share, plan

log = logging.getLogger(__name__)

# What the API publishes on process:message to wake the wwebjs processes up (commands too).
SESSION_COMMAND_MESSAGE = "wwebjs.session_command"


class SessionFleet:
    """Membership and fair share of one wwebjs process (see module docstring)."""

    def __init__(self, settings: Settings, db: Database, redis: aioredis.Redis, *, holder: str, process_name: str,
                 namespace: str) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self.holder = holder
        self.process_name = process_name
        self.namespace = namespace
        self.members: list[Member] = []
        self.share: Share | None = None
        self.draining = False

    @property
    def capacity(self) -> int | None:
        """WWEBJS_MAX_SESSIONS (None: no limit)."""
        return self.settings.wwebjs_max_sessions or None

    async def plan(self, *, mine: int, wanted: int) -> Share:
        """Keep our row alive with ``mine`` sessions, read the live members, plan this tick's share."""
        me = Member(self.holder, self.capacity, mine, self.draining)
        try:
            holder = Holder.parse(self.holder)
            async with self.db.connection() as conn:
                await store.keep_member(conn, me, process_name=self.process_name, host=holder.host if holder else "",
                                        ttl_seconds=self.settings.wwebjs_lease_ttl_seconds)
                members = await store.live_members(conn)
            self.members = [m for m in members if not self._dead_here(m.holder)]
        except BisnesgptError as exc:
            log.warning("wwebjs membership not renewed: %s", exc.detail)
        if not any(m.holder == self.holder for m in self.members):
            self.members = [*self.members, me]
        self.share = plan(self.members, self.holder, total=wanted, mine=mine,
                          start_batch=self.settings.wwebjs_start_concurrency,
                          handoff_batch=self.settings.wwebjs_handoff_batch)
        return self.share

    def _dead_here(self, holder_text: str) -> bool:
        holder = Holder.parse(holder_text)
        return (self.settings.wwebjs_lease_takeover_same_host and holder_text != self.holder
                and holder is not None and holder.is_dead_here())

    async def wake_peers(self, reason: str) -> None:
        """Ask every wwebjs process to reconcile now (sessions were released for them)."""
        await publish(self.redis, PROCESS_MESSAGE, namespace=self.namespace, payload={
            "processName": self.process_name, "messageType": SESSION_COMMAND_MESSAGE,
            "timestamp": int(time.time() * 1000), "data": {"reason": reason, "holder": self.holder}})

    async def leave(self) -> None:
        """Stop sharing the sessions (the process stops; its leases are released already)."""
        with contextlib.suppress(BisnesgptError):
            async with self.db.connection() as conn:
                await store.leave_members(conn, self.holder)
