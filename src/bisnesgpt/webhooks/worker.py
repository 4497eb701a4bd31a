"""The delivery worker: wake on NOTIFY (or poll), claim due rows, attempt them, record outcomes.

Runs in every ``api`` process (and ``legacy``); any number of them share the work through
row locks (see ``deliveries.py``). Durability comes from PostgreSQL alone: a worker killed
mid-attempt leaves its rows locked only until the lease expires (at once when a process
with the same name starts again), so nothing is lost — an attempt cut short is simply made
again (at-least-once; receivers de-duplicate on ``X-Bisnesgpt-Event-Id``). Redis is not on
this path at all, so a Redis restart does not touch webhook delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bisnesgpt.config import Settings
from bisnesgpt.coordination.leased_loop import LeasedLoop
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.errors import BisnesgptError, CryptoError
from bisnesgpt.core.periodic import Periodic
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.processes.component import Check
from bisnesgpt.webhooks import metrics
from bisnesgpt.webhooks.backoff import retry_delay
from bisnesgpt.webhooks.deliveries import NOTIFY_CHANNEL, ClaimedDelivery, FailureOutcome
from bisnesgpt.webhooks.delivery import AttemptResult, Deliverer
from bisnesgpt.webhooks.payload import encode_body, event_document
from bisnesgpt.webhooks.request import delivery_headers
from bisnesgpt.webhooks.urls import Resolver, SystemResolver

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.webhooks")

# How long a claim holds a row: the attempt's deadline plus room for recording the outcome.
LEASE_MARGIN_SECONDS = 30.0
MAX_ENDPOINTS_PER_CLAIM = 200
CLEANUP_LEASE = "webhook-delivery-cleanup"
CLEANUP_BATCH = 5000
LISTEN_CHECK_INTERVAL = 10.0
_DB_ERRORS = (BisnesgptError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError)


class DeliveryWorker:
    """Delivers due webhook rows with bounded concurrency (per process and per endpoint)."""

    def __init__(self, *, db: Database, database_url: str, box: SecretBox, settings: Settings, holder: str,
                 events: EventRecorder, lease_holder: str | None = None, resolver: Resolver | None = None,
                 rng: random.Random | None = None) -> None:
        """``holder`` marks this process's claims on delivery rows (its process name: a restart
        of the same process frees them at once); ``lease_holder`` holds the clean-up lease."""
        lease_holder = lease_holder or holder
        self.db = db
        self.database_url = database_url
        self.box = box
        self.settings = settings
        self.holder = holder
        self.events = events
        self.rng = rng or random.Random()  # noqa: S311 - jitter only
        self.concurrency = settings.webhook_worker_concurrency
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self.deliverer = Deliverer(
            resolver=resolver or SystemResolver(),
            allow_private=settings.webhook_allow_private_destinations,
            timeout=settings.webhook_timeout_seconds,
            response_max_bytes=settings.webhook_response_max_bytes,
            endpoint_concurrency=settings.webhook_endpoint_concurrency,
            private_excerpts=settings.webhook_allow_private_destinations and settings.webhook_private_response_excerpts,
        )
        self.gauges = Periodic("webhook-gauges", settings.webhook_gauge_interval_seconds, self._upkeep)
        # The first clean-up one gauge interval after start (not in the middle of starting).
        cleanup_every = settings.webhook_cleanup_interval_seconds
        self.cleanup_loop = LeasedLoop(db, CLEANUP_LEASE, lease_holder, cleanup_every, self._cleanup_pass,
                                       ttl=cleanup_every * 2, first_delay=settings.webhook_gauge_interval_seconds)
        self._wake = asyncio.Event()
        self._draining = False
        self._in_flight: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._background: list[asyncio.Task[None]] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._last_loop = time.monotonic()
        self._listening = False
        self.delivered = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Free rows a previous run of this process left locked, then start working."""
        try:
            released = await self.db.execute(SQL.release_stale_claims, self.holder)
            if not released.endswith(" 0"):
                log.info("webhooks: released claims left by a previous %s (%s)", self.holder, released)
        except _DB_ERRORS as exc:
            log.warning("webhooks: could not release stale claims: %s", exc)
        self._loop_task = asyncio.create_task(self._run(), name="webhook-delivery")
        self._background = [asyncio.create_task(self._listen(), name="webhook-listen")]
        self.gauges.start()
        self.cleanup_loop.start()
        log.info("webhook delivery started (concurrency %d, per endpoint %d, horizon %gs)", self.concurrency,
                 self.settings.webhook_endpoint_concurrency, self.settings.webhook_retry_horizon_seconds)

    async def drain(self, timeout: float) -> None:
        """Stop claiming; let attempts in flight finish (and be recorded) within ``timeout``."""
        self._draining = True
        self._wake.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)

    async def stop(self) -> None:
        """Cancel the loops and any attempt still running; release those rows for other workers."""
        self._draining = True
        self._wake.set()
        tasks = [t for t in (self._loop_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        unfinished = dict(self._in_flight)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*tasks, *unfinished, return_exceptions=True)
        if unfinished:
            ids = [item.id for item in unfinished.values()]
            with contextlib.suppress(*_DB_ERRORS):
                await self.db.execute(SQL.release_claims, ids, self.holder)
            log.info("webhooks: released %d unfinished attempt(s) for other workers", len(ids))
        await self.gauges.stop()
        await self.cleanup_loop.stop()
        await self.deliverer.close()

    def check(self) -> Check:
        """``webhookDelivery`` health: the claim loop is alive and has turned recently (or is draining)."""
        alive = self._loop_task is not None and not self._loop_task.done()
        stale_after = max(30.0, self.settings.webhook_poll_interval_seconds * 5)
        recent = time.monotonic() - self._last_loop < stale_after
        ok = self._draining or (alive and recent)
        detail = "draining" if self._draining else ("delivering" if ok else "delivery loop stopped or stuck")
        return Check(ok, detail, {"inFlight": len(self._in_flight), "listening": self._listening,
                                  "delivered": self.delivered})

    # --- the claim loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        poll = self.settings.webhook_poll_interval_seconds
        while not self._draining:
            self._last_loop = time.monotonic()
            self._wake.clear()
            free = self.concurrency - len(self._in_flight)
            claimed: list[ClaimedDelivery] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except _DB_ERRORS as exc:
                    log.warning("webhooks: claim failed (%s); retrying in %gs", exc, poll)
                    await self._sleep(poll)
                    continue
                for item in claimed:
                    task = asyncio.create_task(self._attempt(item), name=f"webhook-{item.id}")
                    self._in_flight[task] = item
                    task.add_done_callback(self._finished)
                metrics.IN_FLIGHT.set(len(self._in_flight))
                if claimed and len(claimed) == free:
                    await asyncio.sleep(0)
                    continue  # there may be more due right now
            timeout = poll
            if free > 0:
                with contextlib.suppress(*_DB_ERRORS):
                    due_at = await self.db.fetchval(SQL.next_due_at)
                    if due_at is not None:
                        timeout = min(timeout, max(0.005, (due_at - datetime.now(UTC)).total_seconds()))
            await self._sleep(timeout)

    async def _sleep(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _claim(self, wanted: int) -> list[ClaimedDelivery]:
        async with self.db.transaction() as conn:
            locked = [r["id"] for r in await conn.fetch(SQL.lock_due_endpoints, MAX_ENDPOINTS_PER_CLAIM)]
            if not locked:
                return []
            rows = await conn.fetch(SQL.claim_due_deliveries, self.holder, locked,
                                    self.settings.webhook_endpoint_concurrency, wanted, self.lease_seconds)
        return [ClaimedDelivery.from_row(r) for r in rows]

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        metrics.IN_FLIGHT.set(len(self._in_flight))
        if not task.cancelled() and task.exception() is not None:
            log.error("webhooks: attempt task failed: %r", task.exception())
        self._wake.set()  # a slot is free

    # --- one attempt -------------------------------------------------------------------------

    def signed_request(self, item: ClaimedDelivery) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers of this attempt (secrets decrypted only here)."""
        body = encode_body(event_document(
            event_id=item.event_id, event_type=item.event_type, created_at=item.event_created_at,
            company_id=item.company_id, phone_index=item.phone_index, data=item.data, raw=item.raw,
            include_raw=item.include_raw,
        ))
        headers = delivery_headers(
            self.box, item.endpoint_id, body, secret_encrypted=item.secret_encrypted,
            previous_secret_encrypted=item.previous_secret_encrypted, headers_encrypted=item.headers_encrypted,
            event_id=item.event_id, event_type=item.event_type, delivery_id=str(item.id), attempt=item.attempts)
        return body, headers

    async def _attempt(self, item: ClaimedDelivery) -> None:
        try:
            body, headers = self.signed_request(item)
        except (CryptoError, ValueError) as exc:
            result = AttemptResult(False, None, f"cannot prepare the request: {exc}", None, None, 0.0)
        else:
            result = await self.deliverer.post(item.endpoint_id, item.url, body, headers)
        metrics.ATTEMPT_SECONDS.observe(result.duration)
        await self._record(item, result)

    async def _record(self, item: ClaimedDelivery, result: AttemptResult) -> None:
        """Write the outcome, retrying while PostgreSQL is briefly unreachable (within the lease)."""
        deadline = time.monotonic() + self.lease_seconds / 2
        pause = 0.25
        while True:
            try:
                if result.ok:
                    await self._record_delivered(item, result)
                else:
                    await self._record_failed(item, result)
                return
            except _DB_ERRORS as exc:
                if time.monotonic() + pause > deadline:
                    log.error(  # noqa: TRY400 - expected outage, no traceback
                        "webhooks: could not record attempt of delivery %d (%s); it will be retried "
                              "when its claim expires", item.id, exc)
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _record_delivered(self, item: ClaimedDelivery, result: AttemptResult) -> None:
        await self.db.execute(SQL.record_delivered, item.id, self.holder, result.status_code, result.excerpt)
        self.delivered += 1
        metrics.DELIVERED.inc()
        if item.attempts == 1:
            age = (datetime.now(UTC) - item.event_created_at).total_seconds()
            metrics.EVENT_TO_DELIVERY_SECONDS.observe(max(0.0, age))

    async def _record_failed(self, item: ClaimedDelivery, result: AttemptResult) -> None:
        settings = self.settings
        delay = retry_delay(item.attempts, base=settings.webhook_retry_base_seconds,
                            max_delay=settings.webhook_retry_max_delay_seconds, rng=self.rng)
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, settings.webhook_retry_max_delay_seconds))
        row = await self.db.fetchrow(
            SQL.record_failed, item.id, self.holder, result.status_code, result.error, delay,
            settings.webhook_retry_horizon_seconds, settings.webhook_auto_disable_min_failures,
            settings.webhook_auto_disable_after_seconds, result.excerpt,
        )
        metrics.FAILED.inc()
        outcome = FailureOutcome.from_row(row)
        if outcome.status == "dead":
            metrics.DEAD.inc()
            log.warning("webhooks: delivery %d of %s to endpoint %s is dead after %d attempts: %s", item.id,
                        item.event_id, item.endpoint_id, item.attempts, result.error)
        else:
            log.info("webhooks: delivery %d attempt %d failed (%s); next at %s", item.id, item.attempts,
                     result.error, outcome.next_attempt_at)
        if outcome.consecutive_failures == 1 and outcome.endpoint_id is not None:
            # A failure streak starts (a success resets it): one alert, not one per failed delivery.
            await self.events.record("webhook_endpoint_failing", {
                "endpointId": outcome.endpoint_id, "companyId": outcome.company_id, "url": outcome.url,
                "lastStatusCode": result.status_code, "lastError": result.error,
            }, "warning")
        if outcome.just_disabled:
            metrics.AUTO_DISABLED.inc()
            await self.events.record("webhook_endpoint_disabled", {
                "endpointId": outcome.endpoint_id, "companyId": outcome.company_id, "url": outcome.url,
                "consecutiveFailures": outcome.consecutive_failures,
                "failingSince": outcome.failing_since.isoformat() if outcome.failing_since else None,
                "lastError": result.error,
            }, "warning")

    # --- wake-ups and upkeep ---------------------------------------------------------------------

    def _on_notify(self, *_args: Any) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection; reconnect with backoff when it drops."""
        pause = 0.5
        while True:
            try:
                await self._listen_until_lost()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._listening:
                    log.warning("webhooks: LISTEN connection lost (%s); polling until it is back", exc)
                    pause = 0.5
                else:
                    log.debug("webhooks: LISTEN connect failed: %s", exc)
            else:
                log.warning("webhooks: the server closed the LISTEN connection; reconnecting")
                pause = 0.5
            finally:
                self._listening = False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _listen_until_lost(self) -> None:
        conn = await asyncpg.connect(
            self.database_url, timeout=self.settings.database_connect_timeout,
            server_settings={"application_name": f"bisnesgpt-{self.holder}-webhooks"},
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda *_: lost.set())
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._listening = True
            self._wake.set()  # anything committed while we were not listening
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), LISTEN_CHECK_INTERVAL)
                if not lost.is_set():
                    await conn.fetchval(SQL.check_listen_connection, timeout=5)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _upkeep(self) -> None:
        with contextlib.suppress(*_DB_ERRORS):
            await self.refresh_gauges()
        await self.deliverer.close_idle()

    async def refresh_gauges(self) -> None:
        """Set the backlog, lag and dead-letter gauges from the whole system's rows."""
        row = await self.db.fetchrow(SQL.backlog_stats)
        if row is not None:
            metrics.BACKLOG.labels("pending").set(row["pending"])
            metrics.BACKLOG.labels("retrying").set(row["retrying"])
            metrics.BACKLOG.labels("in_flight").set(row["in_flight"])
            metrics.LAG.set(row["lag_seconds"])
        metrics.DEAD_RECENT.set(await self.db.fetchval(SQL.count_dead_last_day))

    async def _cleanup_pass(self) -> None:
        await self.cleanup()

    async def cleanup(self) -> int:
        """Delete finished rows past retention (``cleanup_loop`` runs it in one process at a time)."""
        deleted = 0
        while True:
            status = await self.db.execute(SQL.delete_finished_deliveries,
                                           self.settings.webhook_delivery_retention_days, CLEANUP_BATCH)
            count = int(status.split()[-1])
            deleted += count
            if count < CLEANUP_BATCH:
                break
        if deleted:
            log.info("webhooks: deleted %d finished delivery rows past retention", deleted)
        return deleted

