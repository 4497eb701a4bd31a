"""The router: which queue (engine) sends for a company's phone.

``phone_configs.connection_type`` decides (``messaging.queues.CONNECTION_TYPE_QUEUES``).
Lookups are cached per process; every change to a phone's configuration is published on
Redis channel ``phone:config`` (``coordination.channels.PHONE_CONFIG_CHANGED``) and every
API instance drops its cached entry when it hears it, so the next message is routed by the
new configuration within a second everywhere. A TTL bounds staleness should a message be
missed, and while the subscription is down (Redis restarting) the cache is bypassed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import PHONE_CONFIG_CHANGED, publish
from bisnesgpt.coordination.coordinator import Subscriptions
from bisnesgpt.core.errors import EngineDisabled, NotFound
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.node_jobs import as_int
from bisnesgpt.messaging.queues import QueueSpec, queue_for_connection_type
from bisnesgpt.phones.store import PhoneConfig, get_phone

log = logging.getLogger(__name__)

Key = tuple[str, int]


@dataclass(frozen=True)
class Route:
    """Where a company's phone sends from."""

    company_id: str
    phone_index: int
    connection_type: str | None
    spec: QueueSpec
    # The phone's default for per-chat order (a message may opt out with "ordered": false).
    ordered: bool = True

    @property
    def process_name(self) -> str:
        """The engine that sends (``wwebjs`` or ``meta``)."""
        return self.spec.process_name

    @property
    def queue_name(self) -> str:
        """The queue its messages go to."""
        return self.spec.name


def route_for(config: PhoneConfig, settings: Settings) -> Route:
    """The route of a configured phone: 422 for an unknown type, 503 if its engine is disabled."""
    spec = queue_for_connection_type(config.connection_type)
    enabled = {"wwebjs": settings.enable_wwebjs, "meta": settings.enable_meta}.get(spec.process_name, True)
    if not enabled:
        raise EngineDisabled(
            f"the {spec.process_name} engine is disabled (ENABLE_{spec.process_name.upper()}=false); "
            f"phone {config.phone_index} of {config.company_id!r} ({config.connection_type}) cannot send; "
            "nothing was stored"
        )
    return Route(config.company_id, config.phone_index, config.connection_type, spec, config.ordered_sends)


async def announce_change(redis: aioredis.Redis, namespace: str, company_id: str, phone_index: int | None,
                          connection_type: str | None, origin: str) -> bool:
    """Tell every API instance of the deployment that a phone's configuration changed (best effort)."""
    return await publish(redis, PHONE_CONFIG_CHANGED, {
        "companyId": company_id, "phoneIndex": phone_index, "connectionType": connection_type, "origin": origin,
    }, namespace=namespace)


class MessageRouter:
    """Cached ``(company, phone) → Route``, invalidated over pub/sub (``phone:config``).

    The cache is used only while the coordinator's subscription is up: everything cached is
    dropped on every (re)subscription and on a loss (a change announced meanwhile was missed).
    """

    def __init__(self, db: Database, settings: Settings, subscriptions: Subscriptions, *, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.settings = settings
        self.ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[Key, tuple[float, PhoneConfig | None]] = {}
        self._generation = 0
        self.listening = False
        self.invalidations = 0
        subscriptions.on(PHONE_CONFIG_CHANGED, self._on_change)
        subscriptions.on_connection(self._on_connection)

    # --- routing ------------------------------------------------------------------------

    async def config(self, company_id: str, phone_index: int) -> PhoneConfig | None:
        """The phone's configuration (cached while the subscription is up)."""
        key = (company_id, phone_index)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and self.listening and cached[0] > now:
            return cached[1]
        generation = self._generation
        async with self.db.connection() as conn:
            config = await get_phone(conn, company_id, phone_index)
        # An invalidation that arrived during the read may concern what was just read.
        if self.listening and generation == self._generation:
            self._cache[key] = (now + self.ttl, config)
        return config

    async def route(self, company_id: str, phone_index: int) -> Route:
        """Where this phone sends from: 404 if it is not configured (see ``route_for``)."""
        config = await self.config(company_id, phone_index)
        if config is None:
            raise NotFound(f"no phone {phone_index} configured for company {company_id!r}: add it with `bisnesgpt "
                           f"phones add {company_id} --index {phone_index}`, or send with another phoneIndex",
                           errors=[{"field": "phoneIndex", "message": "no such phone configured", "type": "not_found"}])
        return route_for(config, self.settings)

    def invalidate(self, company_id: str | None = None, phone_index: int | None = None) -> None:
        """Drop cached entries: one phone, a whole company, or (no arguments) everything."""
        self._generation += 1
        self.invalidations += 1
        if company_id is None:
            self._cache.clear()
        elif phone_index is None:
            for key in [k for k in self._cache if k[0] == company_id]:
                del self._cache[key]
        else:
            self._cache.pop((company_id, phone_index), None)

    # --- the subscription ---------------------------------------------------------------------

    def _on_connection(self, connected: bool) -> None:
        if connected:
            log.info("router: listening on %s", PHONE_CONFIG_CHANGED)
        elif self.listening:
            log.warning("router: %s subscription lost; bypassing the cache until back", PHONE_CONFIG_CHANGED)
        self.listening = connected
        self.invalidate()  # anything cached before (re)subscribing, or while away, may be stale

    def _on_change(self, change: JsonObject) -> None:
        company_id = change.get("companyId")
        phone_index = change.get("phoneIndex")
        try:
            self.invalidate(str(company_id) if company_id is not None else None,
                            as_int(phone_index) if phone_index is not None and company_id is not None else None)
        except (ValueError, TypeError):
            log.warning("malformed %s message %r; dropping the whole cache", PHONE_CONFIG_CHANGED, change)
            self.invalidate()

