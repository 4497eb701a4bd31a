"""API keys remembered per process for a few seconds: no database round trip per request.

Off by default (``API_KEY_CACHE_SECONDS=0``: every request reads its key, and a key changed
in SQL counts at once). Otherwise only a key that authenticated is kept (with its company's
status), for at most ``API_KEY_CACHE_SECONDS``; an unknown, revoked or expired key always asks PostgreSQL, so a
key created a moment ago works at once and a failed authentication is counted as before.

A revocation is honoured:

* at once by every process that hears ``api:keys`` (``bisnesgpt keys revoke`` publishes it;
  the whole cache is dropped), and by the process whose stream guard finds a revoked key;
* within ``API_KEY_CACHE_SECONDS`` otherwise (a change made in SQL, Redis unreachable) — the
  documented delay. While the coordinator's subscription is down nothing is cached.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from bisnesgpt.coordination.channels import API_KEYS_CHANGED
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.tenancy.store import ApiKey, CompanyStatus

log = logging.getLogger(__name__)

# Entries past this many are dropped wholesale: a flood of distinct valid keys cannot grow it.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedKey:
    """A key that authenticated, its company's status then, and when to ask again."""

    record: ApiKey
    company_status: CompanyStatus | None
    expires: float


class KeyCache:
    """``key hash → CachedKey`` for ``ttl`` seconds while the subscription is up (see the module docstring)."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, CachedKey] = {}
        self._generation = 0
        self.listening = False
        self.drops = 0
        # Until attached, ``listening`` alone says whether a drop would be heard (set by tests).
        self._hears: Callable[[], bool] = lambda: True

    def attach(self, coordinator: Coordinator) -> None:
        """Listen for ``api:keys`` (the coordinator may already be connected)."""
        coordinator.on(API_KEYS_CHANGED, self._on_change)
        coordinator.on_connection(self._on_connection)
        self.listening = coordinator.connected
        # Registered while connected, the channel is subscribed a moment later: not before.
        self._hears = lambda: coordinator.hears(API_KEYS_CHANGED)

    @property
    def generation(self) -> int:
        """Changes with every drop: a read that began before a drop must not be cached."""
        return self._generation

    def get(self, key_hash: str) -> CachedKey | None:
        """The cached entry, if it is still fresh and the cache is in use."""
        if not self.listening or self.ttl <= 0 or not self._hears():
            return None
        entry = self._entries.get(key_hash)
        if entry is None or entry.expires <= self._clock():
            return None
        return entry

    def put(self, key_hash: str, record: ApiKey, company_status: CompanyStatus | None, generation: int) -> None:
        """Remember a key that authenticated (read while ``generation`` was current)."""
        if not self.listening or self.ttl <= 0 or generation != self._generation or not self._hears():
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key_hash] = CachedKey(record, company_status, self._clock() + self.ttl)

    def drop(self) -> None:
        """Forget every key (a key was revoked somewhere, or the subscription changed)."""
        self._generation += 1
        self.drops += 1
        self._entries.clear()

    def _on_connection(self, connected: bool) -> None:
        self.listening = connected
        self.drop()  # a revocation announced while away was missed

    def _on_change(self, _change: JsonObject) -> None:
        self.drop()


# One cache per process context (the api app and the dashboard share it): id → (the context, weakly; its cache).
_CACHES: dict[int, tuple[weakref.ref[ProcessContext], KeyCache]] = {}


def cache_for(ctx: ProcessContext) -> KeyCache:
    """The context's ``KeyCache`` (built and attached to its coordinator on first use)."""
    held = _CACHES.get(id(ctx))
    if held is not None and held[0]() is ctx:
        return held[1]
    cache = KeyCache(ctx.settings.api_key_cache_seconds)
    cache.attach(ctx.coordinator)
    _CACHES[id(ctx)] = (weakref.ref(ctx), cache)
    return cache


def key_cache(conn: HTTPConnection) -> KeyCache:
    """The ``KeyCache`` of the app serving ``conn``."""
    ctx: ProcessContext = conn.app.state.ctx
    return cache_for(ctx)
