"""The Redis coordinator: every process listens on the coordinator channels.

* ``process:status`` / ``process:heartbeat`` keep ``peers`` — the last known status of
  every other process (also fed by the orchestrator's ``status_update`` broadcast, so it
  works under PM2, where there is no orchestrator, as well);
* ``process:shutdown`` ``{"targets": ["meta-1" | "meta" | "all"], "host": optional, "reason"}``
  asks the matching processes to stop gracefully (under a supervisor they come back fresh:
  a rolling restart);
* ``bot:event`` and ``process:message`` are delivered to handlers components register with
  ``on(channel, handler)``.

Pub/sub is best effort: while Redis is away the listener reconnects quietly and nothing
else is affected. Channels span every logical database of a Redis server, so messages
carry ``redisDb`` (see ``channels.stamped``) and those of another database are ignored;
messages without it (e.g. from the Node server) are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bisnesgpt.coordination.channels import (
    BOT_EVENT,
    PROCESS_HEARTBEAT,
    PROCESS_MESSAGE,
    PROCESS_SHUTDOWN,
    PROCESS_STATUS,
    redis_db_of,
)
from bisnesgpt.core.tasks import cancel_and_wait
from bisnesgpt.infra.redis import redis_client

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
LISTENED = (PROCESS_STATUS, PROCESS_HEARTBEAT, PROCESS_SHUTDOWN, BOT_EVENT, PROCESS_MESSAGE)
RECONNECT_DELAY = 1.0


def shutdown_targets_me(payload: dict[str, Any], *, process_name: str, role: str, host: str) -> bool:
    """Whether a ``process:shutdown`` message addresses this process."""
    wanted_host = payload.get("host")
    if wanted_host and wanted_host != host:
        return False
    targets = payload.get("targets") or []
    if isinstance(targets, str):
        targets = [targets]
    return any(t in (process_name, role, "all") for t in targets)


class Coordinator:
    def __init__(self, redis_url: str, *, process_name: str, role: str, host: str,
                 peers: dict[str, dict[str, Any]], on_shutdown: Callable[[str], None]) -> None:
        self.redis_url = redis_url
        self.process_name = process_name
        self.role = role
        self.host = host
        self.peers = peers
        self.on_shutdown = on_shutdown
        self._handlers: dict[str, list[Handler]] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._db = 0
        self.connected = False

    def on(self, channel: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every message on ``channel`` (any of LISTENED)."""
        self._handlers.setdefault(channel, []).append(handler)

    def update_peer(self, payload: dict[str, Any]) -> None:
        name = payload.get("processName")
        if not isinstance(name, str) or name == self.process_name:
            return
        entry = self.peers.setdefault(name, {})
        entry.update(status=payload.get("status"), pid=payload.get("pid"), role=payload.get("role"),
                     host=payload.get("host"))
        entry["redis"] = {"status": payload.get("status"), "pid": payload.get("pid"), "seenAt": time.time()}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="coordinator")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.info("coordinator: lost Redis (%s); reconnecting", exc)
                self.connected = False
            await asyncio.sleep(RECONNECT_DELAY)

    async def _listen(self) -> None:
        if self._client is None:
            self._client = redis_client(self.redis_url, name=f"bisnesgpt:{self.process_name}:coordinator")
            self._db = redis_db_of(self._client)
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*LISTENED)
            self.connected = True
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    await self._dispatch(str(message["channel"]), message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, channel: str, raw: Any) -> None:
        try:
            payload = json.loads(raw)
        except (TypeError, ValueError):
            return
        if not isinstance(payload, dict):
            return
        if self._client is not None and payload.get("redisDb", self._db) != self._db:
            return  # another deployment on the same Redis server (another logical db)
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
