"""The Redis coordinator: the one subscription of each process, for every channel it hears.

Components never open a pub/sub connection of their own: they register with
``on(channel, handler)`` (and ``on_connection(listener)`` when they must know about gaps)
and the coordinator holds one connection subscribed to every registered channel,
reconnecting after a loss. What it handles itself:

* ``process:status`` / ``process:heartbeat`` keep ``peers`` — the last known status of
  every other process (also fed by the orchestrator's ``status_update`` broadcast, so it
  works under PM2, where there is no orchestrator, as well);
* ``process:shutdown`` ``{"targets": ["meta-1" | "meta" | "all"], "host": optional, "reason"}``
  asks the matching processes to stop gracefully (under a supervisor they come back fresh:
  a rolling restart).

Pub/sub is best effort: while Redis is away the listener reconnects quietly, listeners
hear ``False`` (a handler that caches must stop trusting its cache) and ``True`` once
subscribed again (anything published meanwhile was missed). Channels span every logical
database of a Redis server, so the coordinator subscribes under its deployment's namespace
(``<namespace>:<channel>``, see ``channels.py``) and also ignores a message stamped with
another namespace or Redis db; an unstamped message (e.g. from the Node server, heard only
with an empty ``REDIS_NAMESPACE``) is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bisnesgpt.coordination.channels import (
    PROCESS_HEARTBEAT,
    PROCESS_SHUTDOWN,
    PROCESS_STATUS,
    channel_name,
    redis_db_of,
)
from bisnesgpt.core.tasks import cancel_and_wait
from bisnesgpt.infra.redis import pubsub_client

if TYPE_CHECKING:
    from bisnesgpt.processes.context import Peer

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
ConnectionListener = Callable[[bool], None]
# Channels every process listens on, whatever its components register.
BUILT_IN = (PROCESS_STATUS, PROCESS_HEARTBEAT, PROCESS_SHUTDOWN)
RECONNECT_DELAY = 1.0
READ_TIMEOUT = 1.0


class Subscriptions(Protocol):
    """The narrow face of the coordinator that components subscribe through."""

    def on(self, channel: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every JSON object published on ``channel``."""

    def on_connection(self, listener: ConnectionListener) -> None:
        """Call ``listener(True)`` after every (re)subscription and ``listener(False)`` on a loss."""

    def hears(self, channel: str) -> bool:
        """Whether what is published on ``channel`` now reaches its handlers (subscribed, connected)."""


def shutdown_targets_me(payload: dict[str, Any], *, process_name: str, role: str, host: str) -> bool:
    """Whether a ``process:shutdown`` message addresses this process."""
    wanted_host = payload.get("host")
    if wanted_host and wanted_host != host:
        return False
    targets = payload.get("targets") or []
    if isinstance(targets, str):
        targets = [targets]
    return any(t in (process_name, role, "all") for t in targets)


@dataclass(eq=False)
class Coordinator:
    """One process's pub/sub listener: peers, shutdown requests, and the components' handlers."""

    redis_url: str
    _: KW_ONLY
    namespace: str
    process_name: str
    role: str
    host: str
    peers: dict[str, Peer]
    on_shutdown: Callable[[str], None]
    connected: bool = field(default=False, init=False)
    _handlers: dict[str, list[Handler]] = field(default_factory=lambda: {channel: [] for channel in BUILT_IN},
                                                init=False, repr=False)
    _connection_listeners: list[ConnectionListener] = field(default_factory=list, init=False, repr=False)
    _unsubscribed: set[str] = field(default_factory=set, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _client: aioredis.Redis | None = field(default=None, init=False, repr=False)
    _db: int = field(default=0, init=False, repr=False)

    def on(self, channel: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every JSON object published on ``channel``."""
        if channel not in self._handlers:
            self._handlers[channel] = []
            self._unsubscribed.add(channel)  # a running listener subscribes at its next read
        self._handlers[channel].append(handler)

    def on_connection(self, listener: ConnectionListener) -> None:
        """Call ``listener(True)`` after every (re)subscription and ``listener(False)`` on a loss."""
        self._connection_listeners.append(listener)

    def hears(self, channel: str) -> bool:
        """Whether what is published on ``channel`` now reaches its handlers (subscribed, connected).

        A channel registered while listening is subscribed at the next read, up to ``READ_TIMEOUT``
        later: a cache that relies on hearing its invalidations asks this, not ``connected``.
        """
        return self.connected and channel in self._handlers and channel not in self._unsubscribed

    def update_peer(self, payload: dict[str, Any]) -> None:
        """Remember a sibling's status from a ``process:status`` / ``process:heartbeat`` message."""
        name = payload.get("processName")
        if not isinstance(name, str) or name == self.process_name:
            return
        entry = self.peers.setdefault(name, {})
        entry.update({"status": payload.get("status"), "pid": payload.get("pid"), "role": payload.get("role"),
                      "host": payload.get("host")})
        entry["redis"] = {"status": payload.get("status"), "pid": payload.get("pid"), "seenAt": time.time()}

    def start(self) -> None:
        """Begin listening (in a task of its own)."""
        self._task = asyncio.create_task(self._run(), name="coordinator")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._set_connected(False)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        for listener in self._connection_listeners:
            try:
                listener(connected)
            except Exception:
                log.exception("coordinator connection listener failed")

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.info("coordinator: lost Redis (%s); reconnecting", exc)
            self._set_connected(False)
            await asyncio.sleep(RECONNECT_DELAY)

    async def _listen(self) -> None:
        if self._client is None:
            self._client = pubsub_client(self.redis_url, name=f"bisnesgpt:{self.process_name}:coordinator")
            self._db = redis_db_of(self._client)
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*(channel_name(self.namespace, c) for c in self._handlers))
            self._unsubscribed.clear()
            self._set_connected(True)
            while True:
                if self._unsubscribed:
                    channels = sorted(self._unsubscribed)
                    await pubsub.subscribe(*(channel_name(self.namespace, c) for c in channels))
                    self._unsubscribed.difference_update(channels)
                message = await pubsub.get_message(timeout=READ_TIMEOUT)
                if message is not None and message.get("type") == "message":
                    prefix = channel_name(self.namespace, "")
                    await self._dispatch(str(message["channel"]).removeprefix(prefix), message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, channel: str, raw: Any) -> None:
        try:
            payload = json.loads(raw)
        except (TypeError, ValueError):
            log.debug("coordinator: not JSON on %s: %r", channel, raw)
            return
        if not isinstance(payload, dict):
            return
        if payload.get("redisDb", self._db) != self._db or payload.get("namespace", self.namespace) != self.namespace:
            return  # another deployment on the same Redis server
        if channel in (PROCESS_STATUS, PROCESS_HEARTBEAT):
            self.update_peer(payload)
        elif channel == PROCESS_SHUTDOWN and shutdown_targets_me(
                payload, process_name=self.process_name, role=self.role, host=self.host):
            log.warning("coordinator: shutdown requested via %s: %s", channel, payload.get("reason", "-"))
            self.on_shutdown(str(payload.get("reason") or PROCESS_SHUTDOWN))
        for handler in self._handlers.get(channel, ()):
            try:
                result = handler(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("coordinator handler for %s failed", channel)
