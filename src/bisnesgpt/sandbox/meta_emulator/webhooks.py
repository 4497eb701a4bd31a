"""Webhooks back to the product: status ladders, injected inbound messages, raw payloads.

Each webhook is scheduled at a due time and POSTed by a background loop: signed with
``X-Hub-Signature-256`` when an app secret is configured (``meta`` profile), carrying the
``X-Webhook-Token`` header when a token is configured (``d360`` profile). Deliveries that
fail (connection refused, non-2xx) are retried with backoff for ``retry_seconds``, as Meta
retries for days — so a product process that is restarted still receives everything.
Every attempt is recorded (status, latency) for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
import time
from dataclasses import dataclass, field

import httpx

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.meta.signature import sign
from bisnesgpt.sandbox.meta_emulator.payloads import StatusName, WebhookPayload, envelope, status_value
from bisnesgpt.sandbox.meta_emulator.record import DeliveryKind, WebhookLog, WebhookSummary
from bisnesgpt.sandbox.meta_emulator.state import Billing, EmulatedPhone, WebhookConfig

log = logging.getLogger(__name__)

MAX_PARALLEL_DELIVERIES = 32


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    payload: WebhookPayload | JsonObject = field(compare=False)
    kind: DeliveryKind = field(compare=False)
    summary: WebhookSummary = field(compare=False)
    first_due: float = field(compare=False, default=0.0)
    attempt: int = field(compare=False, default=0)


class WebhookSender:
    """Schedules and delivers webhooks (see module docstring)."""

    def __init__(self, config: WebhookConfig, record: WebhookLog | None = None) -> None:
        self.config = config
        self.record = record or WebhookLog()
        self._queue: list[_Delivery] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_PARALLEL_DELIVERIES)

    def start(self) -> None:
        """Open the HTTP client and start the delivery loop (in the running event loop)."""
        self._http = httpx.AsyncClient(timeout=self.config.timeout_seconds,
                                       limits=httpx.Limits(max_connections=MAX_PARALLEL_DELIVERIES))
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        """Stop delivering; webhooks still queued are dropped (the emulator is going away)."""
        if self._task is not None:
            self._task.cancel()
        for task in list(self._inflight):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()

    @property
    def pending(self) -> int:
        """Webhooks not yet delivered: queued, waiting for a retry, or being posted."""
        return len(self._queue) + len(self._inflight)

    def schedule(self, payload: WebhookPayload | JsonObject, *, delay_s: float, kind: DeliveryKind,
                 summary: WebhookSummary) -> int:
        """Queue one webhook; returns its sequence number (none is sent without a URL)."""
        if not self.config.url:
            return 0
        self._seq += 1
        due = time.monotonic() + max(0.0, delay_s)
        heapq.heappush(self._queue, _Delivery(due, self._seq, payload, kind, summary, due))
        self._wake.set()
        return self._seq

    def schedule_ladder(self, phone: EmulatedPhone, wamid: str, wa_id: str, *, failed_code: int | None = None,
                        failed_details: str | None = None, billing: Billing | None = None) -> None:
        """sent → delivered → read (or a single ``failed``), with the configured disorder.

        Each status's ``timestamp`` is when its step happens (the send plus the step's delay),
        so the times stay in ladder order however shuffled the deliveries are; ``sent`` and
        ``delivered`` carry ``billing``'s conversation and pricing.
        """
        cfg = self.config
        sent_at = time.time()
        steps: list[tuple[StatusName, float]]
        if failed_code is not None:
            steps = [("failed", cfg.sent_delay_ms)]
        else:
            steps = [("sent", cfg.sent_delay_ms), ("delivered", cfg.delivered_delay_ms)]
            if random.random() < cfg.read_rate:  # noqa: S311 - simulation, not security
                steps.append(("read", cfg.read_delay_ms))
        horizon = max(delay for _, delay in steps)
        for status, delay_ms in steps:
            copies = 2 if random.random() < cfg.duplicate_rate else 1  # noqa: S311
            for _ in range(copies):
                base = random.uniform(0, horizon) if cfg.shuffle else delay_ms  # noqa: S311
                due_ms = base + random.uniform(0, cfg.jitter_ms)  # noqa: S311
                value = status_value(wamid, status, wa_id, error_code=failed_code, error_details=failed_details,
                                     billing=billing, at=sent_at + delay_ms / 1000)
                self.schedule(envelope(phone, value), delay_s=due_ms / 1000, kind="status",
                              summary={"wamid": wamid, "status": status, "recipient": wa_id})

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._queue[0].due - time.monotonic()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            delivery = heapq.heappop(self._queue)
            await self._slots.acquire()
            task = asyncio.create_task(self._deliver(delivery))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, delivery: _Delivery) -> None:
        try:
            ok = await self._post(delivery)
        finally:
            self._slots.release()
        if ok:
            return
        elapsed = time.monotonic() - delivery.first_due
        if elapsed < self.config.retry_seconds:
            delivery.attempt += 1
            delivery.due = time.monotonic() + min(5.0, 0.2 * 2 ** min(delivery.attempt, 5))
            heapq.heappush(self._queue, delivery)
            self._wake.set()
        else:
            log.warning("webhook %s given up after %.0fs", delivery.summary, elapsed)

    async def _post(self, delivery: _Delivery) -> bool:
        cfg = self.config
        if not cfg.url or self._http is None:
            return True
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if cfg.app_secret:
            headers["X-Hub-Signature-256"] = sign(cfg.app_secret, body)
        if cfg.token:
            headers["X-Webhook-Token"] = cfg.token
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._http.post(cfg.url, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.monotonic() - started) * 1000
        self.record.add(kind=delivery.kind, url=cfg.url, http_status=status, error=error,
                        latency_ms=round(latency_ms, 3), attempt=delivery.attempt, delivery=delivery.seq,
                        summary=delivery.summary)
        return status is not None and 200 <= status < 300
