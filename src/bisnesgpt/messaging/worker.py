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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bullmq.custom_errors import DelayedError, UnrecoverableError

from bisnesgpt.core.ids import new_message_id
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import connection_kwargs, fast_retry
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.queues import DEFAULT_PREFIX, QueueSpec
from bisnesgpt.messaging.states import PAST_SENDING, advance_status

log = logging.getLogger(__name__)

# A killed worker's job: lock expires <= LOCK_DURATION_MS after its last renewal; the stalled
# checker (run at start and every STALLED_INTERVAL_MS) moves it back within two checks.
LOCK_DURATION_MS = 5_000
STALLED_INTERVAL_MS = 2_000
MAX_STALLED_COUNT = 10
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
    ) -> None:
        self.db = db
        self.engine = engine
        self.spec = spec
        self.process_name = process_name
        self._on_outcome = on_outcome or (lambda _outcome, _seconds: None)

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
            await job.moveToDelayed(int(time.time() * 1000) + defer.delay_ms, token)
            raise DelayedError(defer.detail) from defer
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
            await job.moveToDelayed(int(time.time() * 1000) + defer.delay_ms, token)
            raise DelayedError(defer.detail) from defer
        except PermanentSendError as exc:
            await self._fail(message, exc.code, exc.provider_title, exc.details)
            raise UnrecoverableError(f"{exc.code}: {exc.provider_title}") from exc
        except RetryableSendError as exc:
            await self._retry_or_fail(job, token, message, exc)
            raise
        except Exception as exc:
            log.exception("unexpected error sending %s", message.message_id)
            await self._retry_or_fail(
                job, token, message, RetryableSendError(str(exc) or type(exc).__name__, code="INTERNAL")
            )
            raise

        async with self.db.transaction() as conn:
            await advance_status(conn, message.id, "sent", source=self.spec.process_name,
                                 external_id=receipt.external_id, detail=receipt.detail)
            await store.touch_outbound_session(conn, message.company_id, message.phone_index, message.contact)
        return {"outcome": "sent", "externalId": receipt.external_id}

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
        from bisnesgpt.messaging.serial_fetch import SerialFetchWorker

        self._worker = SerialFetchWorker(
            self.spec.name,
            self.processor,
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

    def _on_error(self, error: Any, *_args: Any) -> None:
        self.last_error = str(error)
        # A job caught mid-move (delayed/completed) between two lock renewals is harmless.
        level = logging.DEBUG if "could not renew lock" in str(error).lower() else logging.WARNING
        log.log(level, "worker %s: %s", self.spec.name, error)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def active_jobs(self) -> int:
        return len(self._worker.jobs) if self._worker is not None else 0

    async def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, let in-flight ones finish up to ``timeout``, then force."""
        if self._worker is None:
            return
        try:
            await asyncio.wait_for(self._worker.close(), timeout)
        except TimeoutError:
            log.warning("worker %s: in-flight jobs did not finish in %.1fs; forcing", self.spec.name, timeout)
            await self._worker.close(force=True)
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        self._worker = None
