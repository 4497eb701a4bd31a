"""Ending live streams whose credentials stopped being valid.

A request is authenticated once, but an SSE or WebSocket stream stays open for hours: without
this, a revoked key (or a disabled company) kept receiving session events, QR codes and
events. Each streaming component has one ``StreamGuard``: every open stream registers its key
with ``watch``; one ``Periodic`` pass every ``STREAM_AUTH_RECHECK_SECONDS`` asks PostgreSQL
which of the watched keys are still valid (one query for all streams) and ends the streams of
the others. The operator key from ``ADMIN_API_KEY`` is a setting, not a row: it cannot be
revoked while the process runs, so its streams are not watched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bisnesgpt.api.auth import Principal
from bisnesgpt.core.periodic import Periodic
from bisnesgpt.db.pool import Database
from bisnesgpt.tenancy import store

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Watch:
    """One open stream's registration: ``on_revoked`` is called once if its key stops being valid."""

    key_id: int
    on_revoked: Callable[[], None]
    ended: bool = field(default=False)


class StreamGuard:
    """Checks the keys of the open streams every ``interval`` seconds and ends those revoked."""

    def __init__(self, db: Database, interval: float, name: str,
                 on_revoked_key: Callable[[], None] | None = None) -> None:
        self.db = db
        # Called once per pass that found a revoked key: the process's key cache forgets it.
        self.on_revoked_key = on_revoked_key
        self.watches: set[Watch] = set()
        self.ended = 0
        self.periodic = Periodic(f"{name}:stream-guard", interval, self.check)

    def watch(self, principal: Principal, on_revoked: Callable[[], None]) -> Watch | None:
        """Register a stream opened by ``principal`` (None: an operator key of the settings, never revoked)."""
        if principal.key_id is None:
            return None
        entry = Watch(principal.key_id, on_revoked)
        self.watches.add(entry)
        return entry

    def forget(self, entry: Watch | None) -> None:
        """The stream closed."""
        if entry is not None:
            self.watches.discard(entry)

    async def check(self) -> None:
        """One pass: end every stream whose key is no longer valid."""
        if not self.watches:
            return
        watched = list(self.watches)
        async with self.db.connection() as conn:
            live = await store.live_key_ids(conn, sorted({w.key_id for w in watched}))
        if self.on_revoked_key is not None and any(w.key_id not in live for w in watched):
            self.on_revoked_key()
        for entry in watched:
            if entry.key_id in live or entry.ended:
                continue
            entry.ended = True
            self.watches.discard(entry)
            self.ended += 1
            log.info("ending a live stream of key %d: revoked, or its company disabled", entry.key_id)
            try:
                entry.on_revoked()
            except Exception:
                log.exception("ending a revoked stream failed")

    def start(self) -> None:
        """Begin the checks."""
        self.periodic.start()

    async def stop(self) -> None:
        """Stop the checks."""
        await self.periodic.stop()
