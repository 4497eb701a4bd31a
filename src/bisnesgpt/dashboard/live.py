"""The live stream behind every dashboard page (Server-Sent Events).

One hub per api process. It listens through the process's coordinator (the Redis
``process:heartbeat``, ``process:status`` and ``bot:event`` channels, already filtered to
this deployment's Redis db) and, while anyone watches, re-reads process health
(``/health/all``'s judgement) and queue counts every ``DASHBOARD_LIVE_INTERVAL_MS`` — a
process that died stops heartbeating, so only re-judging shows it going ``down``; a
``process:status`` message (the orchestrator saw a child exit) triggers a re-read at once.

Events (``event:`` names): ``overview`` (processes, operators only), ``process``
(a heartbeat or status change, operators only), ``queues`` (operators only) and
``session`` (a WhatsApp-Web session changed: to operators and to that company's users;
QR payloads are left out — the page loads the image from the QR route). A slow client
loses its oldest events, never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypedDict

from bisnesgpt.api.auth import Principal
from bisnesgpt.api.session_events import put_dropping_oldest, sse
from bisnesgpt.coordination.channels import BOT_EVENT, PROCESS_HEARTBEAT, PROCESS_STATUS
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
KEEPALIVE_S = 15.0
SNAPSHOT_TIMEOUT_S = 10
COALESCE_S = 0.2
SESSION_EVENT_TYPES = frozenset({"status_update"})
HIDDEN_SESSION_METADATA = frozenset({"qrCode"})
# What a heartbeat or status message shows of a process.
PROCESS_FIELDS = ("processName", "role", "pid", "status", "uptime", "rssMb", "cpu", "activeBots", "ts", "delayMs",
                  "reason", "source")
# Put on a watcher's queue to end its stream (compared by identity).
CLOSED: JsonObject = {"__closed__": True}

EventData = Mapping[str, object]
Snapshot = Callable[[], Awaitable[EventData]]


class SessionEvent(TypedDict):
    """A WhatsApp-Web session change as the phones page receives it (no QR payload)."""

    companyId: str
    phoneIndex: JsonValue
    status: str
    phoneNumber: JsonValue
    at: JsonValue
    qrAvailable: bool
    pairingCode: JsonValue
    reason: JsonValue
    metadata: JsonObject


class Watcher:
    """One open stream: what it may see and its queue of (event name, data)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[tuple[str, EventData]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: str, data: EventData) -> None:
        """Queue an event; a full queue loses its oldest one (a slow client never slows the others)."""
        if put_dropping_oldest(self.queue, (event, data)):
            self.dropped += 1


class LiveHub:
    """The live events of this api process, fanned out to every open dashboard stream it may see."""

    def __init__(self, interval_s: float, *, overview: Snapshot, queues: Snapshot) -> None:
        self.interval_s = interval_s
        self._overview = overview
        self._queues = queues
        self.watchers: set[Watcher] = set()
        self._refresh = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------

    def listen(self, coordinator: Coordinator) -> None:
        """Hear heartbeats, status changes and bot events through the process's coordinator."""
        coordinator.on(PROCESS_HEARTBEAT, self._on_heartbeat)
        coordinator.on(PROCESS_STATUS, self._on_status)
        coordinator.on(BOT_EVENT, self._on_bot_event)

    def start(self) -> None:
        """Begin the periodic snapshots."""
        self._task = asyncio.create_task(self._run(), name="dashboard-live")

    async def close(self) -> None:
        """End every stream and the periodic snapshots."""
        for watcher in list(self.watchers):
            watcher.offer("__closed__", CLOSED)
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    # --- subscriptions ----------------------------------------------------------------------

    def watch(self, principal: Principal) -> Watcher:
        """A new stream for this principal (an operator's first gets fresh numbers at once)."""
        watcher = Watcher(principal)
        self.watchers.add(watcher)
        self._refresh.set()
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        """Forget a closed stream."""
        self.watchers.discard(watcher)

    def _operators(self) -> list[Watcher]:
        return [w for w in self.watchers if w.principal.is_admin]

    def broadcast(self, event: str, data: EventData, *, company_id: str | None = None) -> None:
        """To every operator, and to the users of ``company_id`` when given."""
        for watcher in list(self.watchers):
            if watcher.principal.is_admin or (company_id is not None and watcher.principal.company_id == company_id):
                watcher.offer(event, data)

    # --- coordinator handlers -----------------------------------------------------------------

    def _on_heartbeat(self, payload: JsonObject) -> None:
        if self._operators():
            self.broadcast("process", {"kind": "heartbeat", **_process_fields(payload)})

    def _on_status(self, payload: JsonObject) -> None:
        if self._operators():
            self.broadcast("process", {"kind": "status", **_process_fields(payload)})
            self._refresh.set()

    def _on_bot_event(self, payload: JsonObject) -> None:
        company_id = payload.get("companyId")
        if payload.get("eventType") not in SESSION_EVENT_TYPES or not isinstance(company_id, str):
            return
        raw_metadata = payload.get("metadata")
        metadata: JsonObject = raw_metadata if isinstance(raw_metadata, dict) else {}
        status = str(payload.get("status") or "")
        event: SessionEvent = {
            "companyId": company_id, "phoneIndex": payload.get("phoneIndex"), "status": status,
            "phoneNumber": payload.get("phoneNumber"), "at": payload.get("timestamp"),
            "qrAvailable": status == "qr" and bool(metadata.get("qrCode")),
            "pairingCode": metadata.get("pairingCode") if status == "pairing_code" else None,
            "reason": metadata.get("reason"),
            "metadata": {k: v for k, v in metadata.items() if k not in HIDDEN_SESSION_METADATA},
        }
        self.broadcast("session", event, company_id=company_id)

    # --- periodic re-reads --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), self.interval_s)
            self._refresh.clear()
            if not self._operators():
                continue
            await self._publish("overview", self._overview)
            await self._publish("queues", self._queues)
            await asyncio.sleep(COALESCE_S)  # coalesce bursts of status messages

    async def _publish(self, event: str, snapshot: Snapshot) -> None:
        data: EventData
        try:
            data = await asyncio.wait_for(snapshot(), SNAPSHOT_TIMEOUT_S)
        except (BisnesgptError, TimeoutError) as exc:
            data = {"error": getattr(exc, "detail", None) or "timed out", "at": time.time()}
        except Exception as exc:  # a broken read must not end the stream task
            log.exception("live %s snapshot failed", event)
            data = {"error": str(exc) or type(exc).__name__, "at": time.time()}
        for watcher in self._operators():
            watcher.offer(event, data)

    # --- one client's stream -------------------------------------------------------------------

    async def stream(self, watcher: Watcher, is_disconnected: Callable[[], Awaitable[bool]],
                     hello: EventData) -> AsyncIterator[str]:
        """The SSE text of one stream: ``hello``, then its events (a keepalive comment when quiet)."""
        try:
            yield "retry: 2000\n\n"
            yield sse("hello", hello)
            while True:
                if await is_disconnected():
                    return
                try:
                    event, data = await asyncio.wait_for(watcher.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if data is CLOSED:
                    return
                yield sse(event, data)
        finally:
            self.unwatch(watcher)


def _process_fields(payload: JsonObject) -> JsonObject:
    return {k: payload.get(k) for k in PROCESS_FIELDS if k in payload}
