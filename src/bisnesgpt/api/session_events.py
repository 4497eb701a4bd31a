"""Live session events for Server-Sent Events: one ``bot:event`` subscription per API process.

The wwebjs processes publish every session change on ``bot:event`` (``status_update``,
``auth_status``). This hub holds one Redis subscription and fans the events out to the
open SSE streams, each filtered to a company (or all companies for operators). A slow
client loses its oldest events, never slows the others; on shutdown every stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bisnesgpt.coordination.channels import BOT_EVENT
from bisnesgpt.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
SESSION_EVENT_TYPES = frozenset({"status_update", "auth_status"})
CLOSED: dict[str, Any] = {"eventType": "__closed__"}


class Subscription:
    def __init__(self, company_id: str | None) -> None:
        self.company_id = company_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: dict[str, Any]) -> None:
        if self.company_id is not None and event.get("companyId") != self.company_id:
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class SessionEventHub:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-event-hub")

    def subscribe(self, company_id: str | None) -> Subscription:
        subscription = Subscription(company_id)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def publish_local(self, event: dict[str, Any]) -> None:
        for subscription in list(self.subscriptions):
            subscription.offer(event)

    async def _run(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=None,
                                             socket_connect_timeout=2.0, health_check_interval=15)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(BOT_EVENT)
                self.connected = True
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    try:
                        event = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    if isinstance(event, dict) and event.get("eventType") in SESSION_EVENT_TYPES:
                        self.publish_local(event)
            except (RedisError, OSError) as exc:
                self.connected = False
                log.debug("session event hub: %s; resubscribing", exc)
                await asyncio.sleep(1.0)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def close(self) -> None:
        for subscription in list(self.subscriptions):
            if subscription.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    subscription.queue.get_nowait()
            subscription.queue.put_nowait(CLOSED)
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"
