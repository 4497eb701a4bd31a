"""What a session is given: its timings (from the settings) and the services of its process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields

import asyncpg
import redis.asyncio as aioredis

from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs import store
from bisnesgpt.engines.wwebjs.driver import SessionKey, WebDriver
from bisnesgpt.engines.wwebjs.driver_events import DeliveryAck, InboundMessage, Notification
from bisnesgpt.health.events import EventRecorder


@dataclass(frozen=True)
class SessionConfig:
    """The timings of a session's life: reconnect backoff, breaker, watchdog, QR and send timeouts."""

    reconnect_base_ms: int
    reconnect_max_ms: int
    stable_seconds: float
    breaker_disconnects: int
    breaker_window_seconds: float
    init_timeout_seconds: float
    qr_timeout_seconds: float
    send_timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionConfig:
        """Each timing from its setting, ``WWEBJS_<NAME>`` (``wwebjs_reconnect_base_ms``, …)."""
        return cls(**{f.name: getattr(settings, f"wwebjs_{f.name}") for f in fields(cls)})


@dataclass
class SessionServices:
    """What a session needs from its process (narrow, injected by the manager)."""

    db: Database
    redis: aioredis.Redis
    driver: WebDriver
    auth: store.AuthStore
    events: EventRecorder
    process_name: str
    holder: str
    pid: int
    # The deployment's pub/sub namespace (session events are published under it).
    namespace: str
    # Both return False when the event is not handled yet (then it is not confirmed).
    on_inbound: Callable[[SessionKey, InboundMessage], Awaitable[bool]]
    on_ack: Callable[[SessionKey, DeliveryAck], Awaitable[bool]]
    # Told once a session is ready to send (after its status is written).
    on_ready: Callable[[SessionKey], None] = lambda _key: None
    # Group notifications and poll votes; False: not handled yet, not confirmed.
    on_notification: Callable[[SessionKey, Notification], Awaitable[bool]] | None = None
    # Called first inside the transaction of every write of the session's state: LeaseLost
    # unless this process's tenure of the session's lease is still the live one (fencing).
    fence: Callable[[asyncpg.Connection, SessionKey], Awaitable[None]] | None = None
    # Told when a fence failed: the session is to be stopped here at once.
    on_lease_lost: Callable[[SessionKey], None] = lambda _key: None
