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
from collections.abc import Mapping
from typing import TypeVar

from bisnesgpt.coordination.channels import BOT_EVENT
from bisnesgpt.coordination.coordinator import Subscriptions
from bisnesgpt.core.jsontypes import JsonObject

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
T = TypeVar("T")
SESSION_EVENT_TYPES = frozenset({"status_update", "auth_status"})
# Put on a stream's queue to end it (compared by identity).
CLOSED: JsonObject = {"eventType": "__closed__"}
# Put on a stream's queue to end it because its key was revoked or its company disabled.
REVOKED: JsonObject = {"eventType": "__revoked__"}


def put_dropping_oldest(queue: asyncio.Queue[T], item: T) -> bool:
    """Queue ``item``; a full queue first loses its oldest item (then True): a slow reader never blocks the rest."""
    dropped = False
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
            dropped = True
    queue.put_nowait(item)
    return dropped


class Subscription:
    """One open SSE stream: the company it shows (None: all) and its queue of ``bot:event`` payloads."""

    def __init__(self, company_id: str | None) -> None:
        self.company_id = company_id
        self.queue: asyncio.Queue[JsonObject] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: JsonObject) -> None:
        """Queue ``event`` if it is this stream's company's; a full queue loses its oldest event."""
        if self.company_id is not None and event.get("companyId") != self.company_id:
            return
        if put_dropping_oldest(self.queue, event):
            self.dropped += 1


class SessionEventHub:
    """Fans ``bot:event`` session events out to the open SSE streams of this process."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions: set[Subscription] = set()
        self.connected = False
        subscriptions.on(BOT_EVENT, self._on_bot_event)
        subscriptions.on_connection(self._on_connection)

    def _on_connection(self, connected: bool) -> None:
        self.connected = connected

    def _on_bot_event(self, event: JsonObject) -> None:
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

    def publish_local(self, event: JsonObject) -> None:
        """Offer ``event`` to every stream (each filters to its company)."""
        for subscription in list(self.subscriptions):
            subscription.offer(event)

    def close(self) -> None:
        """End every open stream."""
        for subscription in list(self.subscriptions):
            put_dropping_oldest(subscription.queue, CLOSED)


def sse(event: str, data: Mapping[str, object], event_id: str | None = None) -> str:
    """One Server-Sent Events message: the event name, an optional id and the data as one JSON line."""
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"
