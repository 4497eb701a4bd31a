"""The worker helper shared by the engines, and a BullMQ worker with its pitfalls handled.

``SendJobProcessor`` is what every send job goes through, whatever the engine:

1. accept both job formats — ours ``{messageId, companyId, phoneIndex}`` and the original
   Node router's ``{companyId, phoneIndex, messageData: {to, message, …}}`` (recorded in
   ``messages`` first, so blue-green migration from the Node server loses nothing);
2. load the message; never send one already past ``sending`` (jobs can run twice);
3. ``engine.before_send`` (pacing, session readiness, 24 h window) may defer or refuse;
4. claim (``sending``, attempts + 1), ``engine.send``, then ``sent`` with the external id —
   or ``failed`` with the provider's code and title when permanent or out of attempts.

``QueueWorker`` wraps ``bullmq.Worker``: no socket timeout on its connections (pitfall 1),
Redis version probed at start so delays are not rounded to seconds (pitfall 2), no bullmq
limiter (pitfall 3: engines pace per phone themselves), short lock/stalled intervals so a
killed worker's job is back within 10 s, fast reconnects after a Redis restart.

Outages never cost a job an attempt: a job that meets PostgreSQL or Redis unavailable is
delayed by ``OUTAGE_RETRY_MS`` (or, with Redis itself gone, left to the stalled checker)
without BullMQ counting it, so an outage never turns into ``failed`` messages. On a
graceful stop, jobs fetched but not yet started (and jobs cut short at the deadline) are
handed back to ``wait`` at once instead of lingering ``active`` until the stalled checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from bullmq import Job, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError
from bullmq.timer import Timer
from bullmq.utils import extract_result
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bisnesgpt.core.errors import DatabaseUnavailable, QueueUnavailable
from bisnesgpt.core.ids import new_message_id
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import connection_kwargs, fast_retry
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.queues import DEFAULT_PREFIX, QueueSpec
from bisnesgpt.messaging.states import PAST_SENDING, advance_status
from bisnesgpt.messaging.wakeups import Wakeups

log = logging.getLogger(__name__)

# A killed worker's job: lock expires <= LOCK_DURATION_MS after its last renewal; the stalled
# checker (run at start and every STALLED_INTERVAL_MS) moves it back within two checks.
LOCK_DURATION_MS = 5_000
STALLED_INTERVAL_MS = 2_000
MAX_STALLED_COUNT = 10
# A job that met an outage (PostgreSQL or Redis unavailable) runs again after this, attempt-free.
OUTAGE_RETRY_MS = 1_000
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable, QueueUnavailable, RedisConnectionError, RedisTimeoutError, BusyLoadingError)
# After a send, recording ``sent`` is retried in place this long (a PostgreSQL restart)
# before the job is given back: a re-run would send the message a second time.
RECORD_SENT_PATIENCE_S = 15.0
# A deferral is logged at INFO at most this often per reason (the rest at DEBUG).
DEFERRAL_LOG_INTERVAL_S = 10.0
# Job-data key counting retries that waited a provider-given delay (see _retry_or_fail).
DELAYED_RETRIES_KEY = "delayedRetries"


@dataclass(frozen=True)
class SendReceipt:
    external_id: str
    detail: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """What an engine implements for the shared worker helper."""

    provider: str

    async def before_send(self, message: store.MessageRecord) -> None:
        """Raise DeferSend (not now) or PermanentSendError (never) before anything is sent."""

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        """Send through the provider; raise RetryableSendError / PermanentSendError / DeferSend."""


@dataclass(frozen=True)
class JobRef:
    message_id: str
    company_id: str | None
    phone_index: int | None
    node_format: bool


def parse_job_data(job_id: str | None, data: dict[str, Any]) -> JobRef:
    """Our format or the original Node router's; raises ValueError on anything else."""
    if "messageId" in data:
        return JobRef(str(data["messageId"]), data.get("companyId"), data.get("phoneIndex"), False)
    if "companyId" in data and isinstance(data.get("messageData"), dict):
        return JobRef(str(job_id or new_message_id()), str(data["companyId"]),
                      int(data.get("phoneIndex") or 0), True)
    raise ValueError(f"unrecognised job data keys: {sorted(data)}")


def node_job_to_message(ref: JobRef, data: dict[str, Any], spec: QueueSpec) -> store.NewOutboundMessage:
    """Map ``{companyId, phoneIndex, messageData:{to, message, …}}`` to a message row."""
    message_data: dict[str, Any] = data["messageData"]
    to = str(message_data.get("to") or message_data.get("chatId") or "")
    digits = "".join(ch for ch in to.split("@", 1)[0] if ch.isdigit())
    if not digits:
        raise ValueError("Node job messageData has no recipient ('to')")
    kind = str(message_data.get("type") or "text")
    text = message_data.get("message") if isinstance(message_data.get("message"), str) else None
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "to": digits, "type": kind}
    if kind == "text":
        payload["text"] = {"body": text or ""}
    else:
        media: dict[str, Any] = {"link": message_data.get("mediaUrl") or message_data.get("url")}
        if text:
            media["caption"] = text
        payload[kind] = media
    return store.NewOutboundMessage(
        message_id=ref.message_id,
        company_id=str(ref.company_id),
        phone_index=int(ref.phone_index or 0),
        provider=spec.process_name,
        connection_type=None,
        chat_id=f"{digits}@c.us",
        message_type=kind,
        payload=payload,
        queue_name=spec.name,
        process_name=spec.process_name,
        content=text,
        media_url=payload.get(kind, {}).get("link") if kind != "text" else None,
        raw=data,
        source="node-job",
    )


Outcome = dict[str, Any]


class SendJobProcessor:
    """The processor a send queue's worker runs for each job (see module docstring)."""

    def __init__(
        self,
        db: Database,
        engine: Engine,
        spec: QueueSpec,
        *,
        process_name: str,
        on_outcome: Callable[[str, float], None] | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.spec = spec
        self.process_name = process_name
        self._on_outcome = on_outcome or (lambda _outcome, _seconds: None)
        self.wakeups = wakeups
        self._deferrals_logged: dict[str, float] = {}

    async def __call__(self, job: Any, token: str) -> Outcome:
        started = time.monotonic()
        outcome = "error"
        try:
            result = await self._process(job, token)
            outcome = str(result.get("outcome", "sent"))
            return result
        except DelayedError:
            outcome = "deferred"
            raise
        except UnrecoverableError:
            outcome = "failed"
            raise
        finally:
            self._on_outcome(outcome, time.monotonic() - started)

    async def _process(self, job: Any, token: str) -> Outcome:
        try:
            ref = parse_job_data(job.id, job.data or {})
        except ValueError as exc:
            raise UnrecoverableError(str(exc)) from exc
        message = await self._load_or_record(ref, job.data or {})
        if message is None:
            log.warning("job %s on %s: message %s not found; dropping", job.id, self.spec.name, ref.message_id)
            return {"outcome": "missing"}
        if message.status in PAST_SENDING:
            return {"outcome": "skipped", "status": message.status}

        try:
            await self.engine.before_send(message)
        except DeferSend as defer:
            if await self._deadline_passed(message, defer.detail):
                raise UnrecoverableError("deadline exceeded") from defer
            await self._defer(job, token, message, defer)
        except PermanentSendError as exc:
            await self._fail(message, exc.code, exc.provider_title, exc.details)
            raise UnrecoverableError(f"{exc.code}: {exc.provider_title}") from exc

        async with self.db.transaction() as conn:
            attempt = await store.claim_for_send(
                conn, message.id, source=self.spec.process_name, process_name=self.process_name
            )
        if attempt is None:  # someone else finished it meanwhile
            return {"outcome": "skipped"}

        try:
            receipt = await self.engine.send(message)
        except DeferSend as defer:
            await self._defer(job, token, message, defer)
        except PermanentSendError as exc:
            await self._fail(message, exc.code, exc.provider_title, exc.details)
            raise UnrecoverableError(f"{exc.code}: {exc.provider_title}") from exc
        except RetryableSendError as exc:
            await self._retry_or_fail(job, token, message, exc)
            raise
        except OUTAGE_ERRORS:
            raise  # QueueWorker delays the job without counting an attempt
        except Exception as exc:
            log.exception("unexpected error sending %s", message.message_id)
            await self._retry_or_fail(
                job, token, message, RetryableSendError(str(exc) or type(exc).__name__, code="INTERNAL")
            )
            raise

        await self._record_sent(message, receipt)
        return {"outcome": "sent", "externalId": receipt.external_id}

    async def _defer(self, job: Any, token: str, message: store.MessageRecord, defer: DeferSend) -> NoReturn:
        self._log_deferral(message, defer)
        await job.moveToDelayed(int(time.time() * 1000) + defer.delay_ms, token)
        if (defer.wake_on is not None and self.wakeups is not None and job.id is not None
                and self.wakeups.note(defer.wake_on, str(job.id), defer.checked_at)):
            await promote(job.backend, [str(job.id)])  # it came true while we were deferring
        raise DelayedError(defer.detail) from defer

    def _log_deferral(self, message: store.MessageRecord, defer: DeferSend) -> None:
        """Why a message is late, at INFO once per reason per interval (a phone down for hours
        defers thousands of messages every minute); pacing holds under a second at DEBUG."""
        level = logging.DEBUG
        if defer.delay_ms >= 1000:
            reason = defer.wake_on or defer.detail.split(":", 1)[0]
            now = time.monotonic()
            if now - self._deferrals_logged.get(reason, -math.inf) >= DEFERRAL_LOG_INTERVAL_S:
                if len(self._deferrals_logged) > 1000:
                    self._deferrals_logged.clear()
                self._deferrals_logged[reason] = now
                level = logging.INFO
        log.log(level, "message %s deferred %d ms: %s", message.message_id, defer.delay_ms, defer.detail)

    async def _record_sent(self, message: store.MessageRecord, receipt: SendReceipt) -> None:
        give_up = time.monotonic() + RECORD_SENT_PATIENCE_S
        pause = 0.2
        while True:
            try:
                async with self.db.transaction() as conn:
                    await advance_status(conn, message.id, "sent", source=self.spec.process_name,
                                         external_id=receipt.external_id, detail=receipt.detail)
                    await store.touch_outbound_session(conn, message.company_id, message.phone_index,
                                                       message.contact)
                return
            except DatabaseUnavailable as exc:
                if time.monotonic() + pause > give_up:
                    raise
                log.warning("message %s sent (%s) but not recorded yet: %s; retrying", message.message_id,
                            receipt.external_id, exc.detail)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _load_or_record(self, ref: JobRef, data: dict[str, Any]) -> store.MessageRecord | None:
        async with self.db.transaction() as conn:
            if ref.node_format:
                await store.insert_outbound(conn, node_job_to_message(ref, data, self.spec))
            return await store.load_message(conn, ref.message_id, ref.company_id)

    async def _retry_or_fail(self, job: Any, token: str, message: store.MessageRecord,
                             exc: RetryableSendError) -> None:
        attempts_allowed = int((job.opts or {}).get("attempts", self.spec.attempts) or 1)
        # A provider-given delay moves the job without BullMQ counting an attempt, so those
        # retries are counted in the job's own data; the budget covers both kinds.
        data = dict(job.data or {})
        delayed_retries = int(data.get(DELAYED_RETRIES_KEY, 0))
        if job.attemptsMade + delayed_retries + 1 >= attempts_allowed:
            code = exc.code or "RETRIES_EXHAUSTED"
            await self._fail(message, code, exc.provider_title, exc.details)
            # Fail the job now too (BullMQ alone would schedule another try: it does not count
            # the provider-delayed ones), so it shows among failed jobs and can be retried.
            raise UnrecoverableError(f"{code}: {exc.provider_title} (out of attempts)") from exc
        if exc.retry_after_ms is not None:
            # The provider said how long to wait: honour it instead of the queue's backoff.
            data[DELAYED_RETRIES_KEY] = delayed_retries + 1
            await job.updateData(data)
            await job.moveToDelayed(int(time.time() * 1000) + exc.retry_after_ms, token)
            raise DelayedError(str(exc)) from exc

    async def _fail(self, message: store.MessageRecord, code: str, title: str, details: Any) -> None:
        async with self.db.transaction() as conn:
            await advance_status(conn, message.id, "failed", source=self.spec.process_name,
                                 error_code=str(code), error_title=title, error_details=details)

    async def _deadline_passed(self, message: store.MessageRecord, reason: str) -> bool:
        if message.deadline_at is None or message.deadline_at > datetime.now(UTC):
            return False
        await self._fail(message, "DEADLINE_EXCEEDED", f"not sent before its deadline: {reason}", None)
        return True


Processor = Callable[[Any, str], Awaitable[Any]]


async def promote(backend: Any, job_ids: list[str]) -> int:
    """Move delayed jobs to ``wait`` now; how many moved (one already running or done is skipped)."""
    moved = 0
    for job_id in job_ids:
        try:
            await backend.promote(job_id)
            moved += 1
        except TypeError as exc:  # bullmq's "not in the delayed state" / "missing key"
            log.debug("job %s not promoted: %s", job_id, exc)
    return moved


# bullmq ships this script (Node's Job.moveToWait uses it) but python-bullmq does not register it.
HAND_BACK_SCRIPT = "moveJobFromActiveToWait-9.lua"


async def hand_back(worker: Any, job: Any, token: str) -> bool:
    """Move a job this worker holds from ``active`` back to ``wait`` (front of the queue)."""
    from bullmq.redis_connection import loadScript

    scripts = worker.backend.scripts
    keys = scripts.getKeys(["active", "wait", "stalled", "paused", "meta", "limiter", "prioritized", "marker",
                            "events"])
    try:
        script = scripts.commands.get(HAND_BACK_SCRIPT)
        if script is None:
            script = scripts.commands[HAND_BACK_SCRIPT] = scripts.redisClient.register_script(
                loadScript(HAND_BACK_SCRIPT))
        result = await script(keys=keys, args=[job.id, token, scripts.toKey(job.id)])
    except Exception as exc:  # Redis gone: the lock expires and the stalled checker returns it
        log.warning("could not hand job %s back: %r", job.id, exc)
        return False
    if isinstance(result, int) and result < 0:
        log.warning("could not hand job %s back: bullmq error %d (no longer ours)", job.id, result)
        return False
    log.info("job %s handed back to wait (worker closing)", job.id)
    return True


_RUN_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("bullmq_job_token")


class _Worker(Worker):  # type: ignore[misc]
    """bullmq's Worker, handing back the jobs it fetched but will not run because it is closing.

    Also keeps renewing the locks of running jobs until they finish: bullmq's run loop closes
    the lock manager as soon as it stops fetching, so a job still draining lost its lock
    after ``lockDuration`` ("Missing lock … moveToDelayed") and was left ``active``.

    And fetches one job at a time (``run``), as Node BullMQ does: the Python port starts one
    fetch per free slot at once, so each job arriving at an idle worker with many slots (the
    meta worker's pacing holds) cost one ``moveToActive`` per free slot, nearly all finding
    nothing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        close_locks = self.lockManager.close

        async def close_when_idle() -> None:
            # bullmq calls this from its run loop (may still have jobs) and from close()'s
            # teardown (always after the jobs): only the idle call really stops renewing.
            if not self.jobs:
                await close_locks()

        self.lockManager.close = close_when_idle
        self.close_locks = close_locks
        untrack = self.lockManager.untrack_job

        def untrack_own(job_id: str) -> None:
            # bullmq untracks by job id alone: a job deferred (moved to delayed) and fetched
            # again at once is tracked anew under a new token before the old run's cleanup,
            # which then untracked the new run: its lock was no longer renewed and expired
            # ("Missing lock" on completion, job left active until the stalled checker).
            tracked = self.lockManager.tracked_jobs.get(job_id)
            if tracked is None or tracked.get("token") == _RUN_TOKEN.get(None):
                untrack(job_id)

        self.lockManager.untrack_job = untrack_own

    async def run(self) -> None:
        """bullmq's run loop with sequential fetching.

        Fetch while slots are free, starting each job as soon as it is fetched; a fetch that
        finds nothing marks the queue drained, so the next one becomes the single blocking
        wait (BZPOPMIN on the marker), parked while jobs run and collected like them.
        """
        if self.running:  # type: ignore[has-type]
            raise RuntimeError("Worker is already running")
        await self._ensure_client_names()
        self.lockManager.start()
        self.stalledCheckTimer = Timer(self.opts.get("stalledInterval") / 1000, self.runStalledJobsCheck, self.emit)
        self.running = True
        concurrency = int(self.opts.get("concurrency") or 1)
        retry_opts = {"delay_in_ms": self.opts.get("runRetryDelay"), "only_emit_error": True}
        fetches = itertools.count(1)
        try:
            while not self.closed:
                if self.paused and not self.closing:
                    await self.resume_event.wait()
                    continue
                started = self._start_fetched()
                while not self.waiting and len(self.processing) < concurrency and not self.closing \
                        and not self.paused:
                    token = f"{self.id}:{next(fetches)}"
                    fetch = asyncio.ensure_future(self.retryIfFailed(functools.partial(self.getNextJob, token),
                                                                     retry_opts))
                    self.processing.add(fetch)
                    await asyncio.sleep(0)  # let it start: it may have become the blocking wait
                    if self.waiting is not None and len(self.processing) > 1:
                        break  # parked; collected with the running jobs below
                    await asyncio.wait({fetch})
                    started += self._start_fetched()
                if self.closing and (started == 0 or not self.processing):
                    break
                if self.processing:
                    await asyncio.wait(self.processing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._after_run()

    async def _after_run(self) -> None:
        """As bullmq's: a loop ended other than by close() (cancelled) leaves nothing running."""
        self.running = False
        if not self.closing:
            for task in self.processing:
                task.cancel()
            if self.waiting and not self.waiting.done():
                self.waiting.cancel()
            if self.processing:
                await asyncio.gather(*self.processing, return_exceptions=True)
            self.processing.clear()
        if self.stalledCheckTimer is not None:
            with contextlib.suppress(Exception):
                self.stalledCheckTimer.stop()
        await self.lockManager.close()

    def _start_fetched(self) -> int:
        """Forget finished tasks; start the jobs that finished fetches brought. How many started."""
        started = 0
        for task in [t for t in self.processing if t.done()]:
            self.processing.discard(task)
            if task.cancelled():
                continue
            result = extract_result(task, self.emit)
            if isinstance(result, Job):
                self.processing.add(asyncio.ensure_future(self.processJob(result, result.token)))
                started += 1
        return started

    async def getNextJob(self, token: str) -> Any:
        job = await super().getNextJob(token)
        if job is not None and self.closing:
            # Fetched while close() began: the run loop may already have stopped collecting.
            await hand_back(self, job, token)
            return None
        return job

    async def processJob(self, job: Any, token: str) -> Any:
        _RUN_TOKEN.set(token)  # each job runs in a task of its own: this context is the job's
        if self.closing:
            # Moved to active by a fetch that raced with close(): never started, give it back.
            await hand_back(self, job, token)
            return None
        try:
            return await super().processJob(job, token)
        except asyncio.CancelledError:
            if self.forceClosing:  # cut short at the drain deadline: back to wait, not stalled
                await asyncio.shield(hand_back(self, job, token))
            raise


class QueueWorker:
    """A ``bullmq.Worker`` for one queue, started after the process starts."""

    def __init__(
        self,
        redis_url: str,
        spec: QueueSpec,
        processor: Processor,
        *,
        concurrency: int | None = None,
        prefix: str = DEFAULT_PREFIX,
        name: str | None = None,
        lock_duration_ms: int = LOCK_DURATION_MS,
        stalled_interval_ms: int = STALLED_INTERVAL_MS,
    ) -> None:
        self.redis_url = redis_url
        self.spec = spec
        self.processor = processor
        self.concurrency = concurrency or spec.concurrency
        self.prefix = prefix
        self.name = name or spec.name
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms
        self._worker: Any = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    async def start(self) -> None:
        self._worker = _Worker(
            self.spec.name,
            self._process,
            {
                "connection": connection_kwargs(self.redis_url),
                "prefix": self.prefix,
                "concurrency": self.concurrency,
                "autorun": False,
                "lockDuration": self.lock_duration_ms,
                "stalledInterval": self.stalled_interval_ms,
                "maxStalledCount": MAX_STALLED_COUNT,
                "removeOnComplete": True,
                "removeOnFail": False,
                "name": self.name,
            },
        )
        self._worker.on("error", self._on_error)
        backend = self._worker.backend
        for connection in (backend.connection, backend.blocking_connection):
            connection.conn.set_retry(fast_retry())
        # Pitfall 2: without a known Redis version, delays are rounded up to whole seconds.
        await backend.blocking_connection.getRedisVersion()
        await backend.connection.getRedisVersion()
        # Recover a killed predecessor's jobs now rather than one stalled interval from now.
        await self._worker.runStalledJobsCheck()
        self._task = asyncio.create_task(self._worker.run(), name=f"worker:{self.spec.name}")

    async def _process(self, job: Any, token: str) -> Any:
        try:
            return await self.processor(job, token)
        except OUTAGE_ERRORS as exc:
            # Not the job's fault: run it again soon without counting an attempt. With Redis
            # gone the move fails too; the job stays active, its lock expires and the stalled
            # checker puts it back once Redis is up (no attempt counted either).
            log.warning("job %s on %s: %s; retrying in %d ms (no attempt used)", job.id, self.spec.name,
                        getattr(exc, "detail", None) or repr(exc), OUTAGE_RETRY_MS)
            try:
                await job.moveToDelayed(int(time.time() * 1000) + OUTAGE_RETRY_MS, token)
            except Exception as move_error:
                log.warning("job %s: could not delay it (%r); the stalled checker will return it", job.id,
                            move_error)
            raise DelayedError(f"dependency unavailable: {exc}") from exc

    def _on_error(self, error: Any, *_args: Any) -> None:
        self.last_error = str(error)
        # A job caught mid-move (delayed/completed) between two lock renewals is harmless.
        level = logging.DEBUG if "could not renew lock" in str(error).lower() else logging.WARNING
        log.log(level, "worker %s: %s", self.spec.name, error)

    async def promote(self, job_ids: list[str]) -> int:
        """Run these delayed jobs now (see ``messaging.wakeups``)."""
        if self._worker is None or not job_ids:
            return 0
        return await promote(self._worker.backend, job_ids)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def active_jobs(self) -> int:
        return len(self._worker.jobs) if self._worker is not None else 0

    async def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, let in-flight ones finish up to ``timeout``, then force.

        Bounded: bullmq's own ``close()`` waits for every job and ignores cancellation, so
        it is only called once nothing runs any more. Jobs fetched but not started, and
        jobs cut short at the deadline, are handed back to ``wait`` (``_Worker``).
        """
        worker = self._worker
        if worker is None:
            return
        self._worker = None
        began = time.monotonic()
        deadline = began + timeout
        worker.closing = True
        worker.paused = False
        worker.resume_event.set()
        if worker.waiting:
            worker.waiting.cancel()
        while True:
            running = [t for t in (self._task, *worker.processing) if t is not None and not t.done()]
            if not running:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("worker %s: %d job(s) did not finish in %.1fs; handing them back", self.spec.name,
                            len(worker.jobs), timeout)
                worker.forceClosing = True
                for task in running:
                    task.cancel()
                await asyncio.wait(running, timeout=2)
                break
            await asyncio.wait(running, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        drained = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(worker.close(force=worker.forceClosing)), 3)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("worker %s: closing its connections timed out", self.spec.name)
        except Exception as exc:
            log.warning("worker %s: close: %r", self.spec.name, exc)
        with contextlib.suppress(Exception):
            await worker.close_locks()  # idempotent; a no-op unless a forced job never ended
        log.info("worker %s closed in %.2fs (jobs drained in %.2fs%s)", self.spec.name, time.monotonic() - began,
                 drained - began, ", forced" if worker.forceClosing else "")
