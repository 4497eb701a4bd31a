"""Live session events for Server-Sent Events, heard on ``bot:event`` through the coordinator.

The wwebjs processes publish every session change on ``bot:event`` (``status_update``,
``auth_status``). This hub hears them through the process's one subscription and fans them out to the
open SSE streams, each filtered to a company (or all companies for operators). A slow
client loses its oldest events, never slows the others; on shutdown every stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from bisnesgpt.coordination.channels import BOT_EVENT
from bisnesgpt.coordination.coordinator import Subscriptions

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
    """Fans ``bot:event`` session events out to the open SSE streams of this process."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions: set[Subscription] = set()
        self.connected = False
        subscriptions.on(BOT_EVENT, self._on_bot_event)
        subscriptions.on_connection(self._on_connection)

    def _on_connection(self, connected: bool) -> None:
        self.connected = connected

    def _on_bot_event(self, event: dict[str, Any]) -> None:
        if event.get("eventType") in SESSION_EVENT_TYPES:
            self.publish_local(event)

    def subscribe(self, company_id: str | None) -> Subscription:
        """A new stream's queue (``None``: every company's events, for operators)."""
        subscription = Subscription(company_id)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a closed stream."""
        self.subscriptions.discard(subscription)

    def publish_local(self, event: dict[str, Any]) -> None:
        """Offer ``event`` to every stream (each filters to its company)."""
        for subscription in list(self.subscriptions):
            subscription.offer(event)

    def close(self) -> None:
        """End every open stream."""
        for subscription in list(self.subscriptions):
            if subscription.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    subscription.queue.get_nowait()
            subscription.queue.put_nowait(CLOSED)


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"
