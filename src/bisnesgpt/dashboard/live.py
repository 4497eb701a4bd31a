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
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bisnesgpt.api.auth import Principal
from bisnesgpt.coordination.channels import BOT_EVENT, PROCESS_HEARTBEAT, PROCESS_STATUS
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
KEEPALIVE_S = 15.0
SESSION_EVENT_TYPES = frozenset({"status_update"})
HIDDEN_SESSION_METADATA = frozenset({"qrCode"})
CLOSED: dict[str, Any] = {"__closed__": True}


class Watcher:
    """One open stream: what it may see and its queue of (event name, data)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: str, data: dict[str, Any]) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait((event, data))


Snapshot = Callable[[], Awaitable[dict[str, Any]]]


class LiveHub:
    def __init__(self, interval_s: float, *, overview: Snapshot, queues: Snapshot) -> None:
        self.interval_s = interval_s
        self._overview = overview
        self._queues = queues
        self.watchers: set[Watcher] = set()
        self._refresh = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_overview: dict[str, Any] | None = None
        self.last_queues: dict[str, Any] | None = None

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
        for watcher in list(self.watchers):
            watcher.offer("__closed__", CLOSED)
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    # --- subscriptions ----------------------------------------------------------------------

    def watch(self, principal: Principal) -> Watcher:
        watcher = Watcher(principal)
        self.watchers.add(watcher)
        self._refresh.set()  # a new operator gets fresh numbers at once
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def _operators(self) -> list[Watcher]:
        return [w for w in self.watchers if w.principal.is_admin]

    def broadcast(self, event: str, data: dict[str, Any], *, company_id: str | None = None) -> None:
        """To every operator, and to the users of ``company_id`` when given."""
        for watcher in list(self.watchers):
            if watcher.principal.is_admin or (company_id is not None and watcher.principal.company_id == company_id):
                watcher.offer(event, data)

    # --- coordinator handlers -----------------------------------------------------------------

    def _on_heartbeat(self, payload: dict[str, Any]) -> None:
        if self._operators():
            self.broadcast("process", {"kind": "heartbeat", **_process_fields(payload)})

    def _on_status(self, payload: dict[str, Any]) -> None:
        if self._operators():
            self.broadcast("process", {"kind": "status", **_process_fields(payload)})
            self._refresh.set()

    def _on_bot_event(self, payload: dict[str, Any]) -> None:
        if payload.get("eventType") not in SESSION_EVENT_TYPES or not isinstance(payload.get("companyId"), str):
            return
        raw_metadata = payload.get("metadata")
        metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        status = str(payload.get("status") or "")
        event = {
            "companyId": payload["companyId"], "phoneIndex": payload.get("phoneIndex"), "status": status,
            "phoneNumber": payload.get("phoneNumber"), "at": payload.get("timestamp"),
            "qrAvailable": status == "qr" and bool(metadata.get("qrCode")),
            "pairingCode": metadata.get("pairingCode") if status == "pairing_code" else None,
            "reason": metadata.get("reason"),
            "metadata": {k: v for k, v in metadata.items() if k not in HIDDEN_SESSION_METADATA},
        }
        self.broadcast("session", event, company_id=payload["companyId"])

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
            await asyncio.sleep(0.2)  # coalesce bursts of status messages

    async def _publish(self, event: str, snapshot: Snapshot) -> None:
        try:
            data = await asyncio.wait_for(snapshot(), 10)
        except (BisnesgptError, TimeoutError) as exc:
            data = {"error": getattr(exc, "detail", None) or "timed out", "at": time.time()}
        except Exception as exc:  # a broken read must not end the stream task
            log.exception("live %s snapshot failed", event)
            data = {"error": str(exc) or type(exc).__name__, "at": time.time()}
        for watcher in self._operators():
            watcher.offer(event, data)

    # --- one client's stream -------------------------------------------------------------------

    async def stream(self, watcher: Watcher, is_disconnected: Callable[[], Awaitable[bool]],
                     hello: dict[str, Any]) -> AsyncIterator[str]:
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


def _process_fields(payload: dict[str, Any]) -> dict[str, Any]:
    keep = ("processName", "role", "pid", "status", "uptime", "rssMb", "cpu", "activeBots", "ts", "delayMs",
            "reason", "source")
    return {k: payload.get(k) for k in keep if k in payload}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"
