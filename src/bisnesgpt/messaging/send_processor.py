"""What every send job goes through, whatever the engine: ``SendJobProcessor``.

1. accept both job formats (``node_jobs``): ours, and the original Node router's;
2. load the message (record a Node job's, or find it from an earlier run); a job without a
   message of its own fails at once with the reason (``JobRefused``), never completes
   empty; never send a message already past ``sending`` (jobs can run twice);
3. ``engine.before_send`` (pacing, session readiness, 24 h window) may defer or refuse;
4. claim (``sending``, attempts + 1; an ordered message waits while an earlier one of its
   chat is unfinished, see ``chat_order``), ``engine.send``, then ``sent`` with the external
   id — or ``failed`` with the provider's code and title when permanent or out of attempts.
   An engine whose sessions have one owner at a time (wwebjs) gives an ``OutcomeFence``: a
   failure after the provider call is recorded only in a transaction where the fence still
   passes; a process fenced out (its lease gone) defers the job instead, for the new owner to
   send or fail. ``sent`` is never fenced: a message that left is recorded as sent, truthfully.

The processor sees a job only through ``JobHandle`` (the handful of bullmq ``Job``
members it uses) and the database only through ``SendStore`` (``PgSendStore`` in
``send_store``), so its branches are unit-tested with fakes
(``tests/unit/test_send_processor.py``). Each run ends in an ``Outcome``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NoReturn, Protocol

import asyncpg
from bullmq.custom_errors import DelayedError, UnrecoverableError

from bisnesgpt.core.errors import LeaseLost
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.health import metrics
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.messaging.errors import DeferSend, JobRefused, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.node_jobs import JobRef, as_int, node_job_to_message, parse_job_data
from bisnesgpt.messaging.queue_worker import OUTAGE_ERRORS
from bisnesgpt.messaging.queues import QueueSpec
from bisnesgpt.messaging.states import PAST_SENDING, MessageState
from bisnesgpt.messaging.store import MessageRecord, NewOutboundMessage
from bisnesgpt.messaging.wakeups import Wakeups

log = logging.getLogger(__name__)

# A deferral is logged at INFO at most this often per reason (the rest at DEBUG).
DEFERRAL_LOG_INTERVAL_S = 10.0
# Job-data key counting retries that waited a provider-given delay (see _retry_or_fail).
DELAYED_RETRIES_KEY = "delayedRetries"

# sent: handed to the provider; skipped: already past sending (or finished by another run);
# deferred: moved to delayed (not now); failed: for good (the message, or a job refused for
# having none); error: the job ended in an error its queue will retry.
OutcomeKind = Literal["sent", "skipped", "deferred", "failed", "error"]

# Inside the transaction recording a failure after the provider call: raises LeaseLost unless
# this process may still decide the message's outcome (it owns the message's session).
OutcomeFence = Callable[[asyncpg.Connection, MessageRecord], Awaitable[None]]
# A fenced-out failure waits this long before the job runs again (on the session's new owner).
FENCED_OUT_RETRY_MS = 1000


@dataclass(frozen=True)
class Outcome:
    """How one run of a send job ended (what completed jobs return)."""

    kind: OutcomeKind
    external_id: str | None = None
    status: MessageState | None = None

    def as_job_result(self) -> dict[str, str]:
        """The JSON BullMQ keeps as the completed job's return value."""
        result: dict[str, str] = {"outcome": self.kind}
        if self.external_id is not None:
            result["externalId"] = self.external_id
        if self.status is not None:
            result["status"] = self.status
        return result


@dataclass(frozen=True)
class SendReceipt:
    """What a provider answered to a send: its message id and anything worth keeping."""

    external_id: str
    detail: JsonObject = field(default_factory=dict)


class Engine(Protocol):
    """What an engine implements for the shared processor."""

    provider: str

    async def before_send(self, message: MessageRecord) -> None:
        """Raise DeferSend (not now) or PermanentSendError (never) before anything is sent."""

    async def send(self, message: MessageRecord) -> SendReceipt:
        """Send through the provider; raise RetryableSendError / PermanentSendError / DeferSend."""


class SendStore(Protocol):
    """Where the processor reads and records a job's message (``send_store.PgSendStore``).

    ``source`` is the name the status history credits (the queue's engine); each method
    commits on its own.
    """

    async def load(self, message_id: str, company_id: str | None) -> MessageRecord | None:
        """The message (of any company when ``company_id`` is None)."""

    async def record_node_job(self, new: NewOutboundMessage) -> MessageRecord:
        """A Node-format job's message: stored now, or found as its own from an earlier run.

        Raises ``JobRefused`` (unknown company or phone, the job id taken by other content).
        """

    async def claim(self, message: MessageRecord, *, source: str, process_name: str) -> int | None:
        """``sending`` for one more attempt: the attempt number, or None if it may not be sent now;
        raises ``EarlierMessagePending`` (a ``DeferSend``) while an earlier message of its chat is unfinished."""

    async def record_sent(self, message: MessageRecord, external_id: str, detail: JsonObject, *,
                          source: str) -> None:
        """``sent`` with the provider's id (waiting out a short database outage: it has left already)."""

    async def record_failed(self, message: MessageRecord, *, code: str, title: str, details: JsonValue,
                            source: str, fence: OutcomeFence | None = None) -> None:
        """``failed`` for good, with the error's code, title and details; ``fence`` (LeaseLost:
        nothing written) runs first in the same transaction."""


class JobHandle(Protocol):
    """The members of a bullmq ``Job`` the processor uses (bullmq's own names)."""

    id: str | None
    data: JsonObject | None
    opts: JsonObject | None
    attemptsMade: int

    async def moveToDelayed(self, timestamp: int, token: str) -> None:
        """Park the job until ``timestamp`` (ms) without counting an attempt."""

    def updateData(self, data: JsonObject) -> Awaitable[object]:
        """Replace the job's data (in Redis too, once awaited)."""

    async def promote(self) -> None:
        """Move the delayed job to ``wait`` now."""


OutcomeListener = Callable[[OutcomeKind, float], None]


class SendJobProcessor:
    """The processor a send queue's worker runs for each job (see module docstring)."""

    def __init__(
        self,
        send_store: SendStore,
        engine: Engine,
        spec: QueueSpec,
        *,
        process_name: str,
        on_outcome: OutcomeListener | None = None,
        wakeups: Wakeups | None = None,
        events: EventRecorder | None = None,
        outcome_fence: OutcomeFence | None = None,
    ) -> None:
        self.store = send_store
        self.outcome_fence = outcome_fence
        self.engine = engine
        self.spec = spec
        self.process_name = process_name
        self._on_outcome = on_outcome or (lambda _outcome, _seconds: None)
        self.wakeups = wakeups
        self.events = events
        self._deferrals_logged: dict[str, float] = {}

    async def __call__(self, job: JobHandle, token: str) -> dict[str, str]:
        """bullmq's processor contract: run the job, return JSON, raise to delay or fail it."""
        return (await self.process(job, token)).as_job_result()

    async def process(self, job: JobHandle, token: str) -> Outcome:
        """Run one job; the outcome, or DelayedError / UnrecoverableError / the retryable error."""
        started = time.monotonic()
        kind: OutcomeKind = "error"
        try:
            outcome = await self._process(job, token)
            kind = outcome.kind
            return outcome
        except DelayedError:
            kind = "deferred"
            raise
        except UnrecoverableError:
            kind = "failed"
            raise
        finally:
            self._on_outcome(kind, time.monotonic() - started)

    async def _process(self, job: JobHandle, token: str) -> Outcome:
        data = job.data or {}
        try:
            ref = parse_job_data(job.id, data)
        except ValueError as exc:
            raise UnrecoverableError(str(exc)) from exc
        message = await self._message_of(job, ref, data)
        if message.status in PAST_SENDING:
            return Outcome("skipped", status=message.status)

        try:
            await self.engine.before_send(message)
        except DeferSend as defer:
            if await self._deadline_passed(message, defer.detail):
                raise UnrecoverableError("deadline exceeded") from defer
            await self._defer(job, token, message, defer)
        except PermanentSendError as exc:
            await self._fail(message, exc.code, exc.provider_title, exc.details)
            raise UnrecoverableError(f"{exc.code}: {exc.provider_title}") from exc

        attempt = await self._claim(job, token, message)
        if attempt is None:  # someone else finished it meanwhile
            return Outcome("skipped")

        try:
            receipt = await self.engine.send(message)
        except DeferSend as defer:
            await self._defer(job, token, message, defer)
        except PermanentSendError as exc:
            await self._fail_sent(job, token, message, exc.code, exc.provider_title, exc.details)
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

        await self.store.record_sent(message, receipt.external_id, receipt.detail, source=self.spec.process_name)
        return Outcome("sent", external_id=receipt.external_id)

    async def _claim(self, job: JobHandle, token: str, message: MessageRecord) -> int | None:
        try:
            return await self.store.claim(message, source=self.spec.process_name, process_name=self.process_name)
        except DeferSend as defer:  # an earlier message of its chat is not finished (chat_order)
            await self._defer(job, token, message, defer)
    async def _message_of(self, job: JobHandle, ref: JobRef, data: JsonObject) -> MessageRecord:
        """The job's own message; a job without one fails now, visibly (it never completes empty)."""
        try:
            return await self._find_message(ref, data)
        except JobRefused as exc:
            refusal = exc
        await self._refused(job, ref, refusal)
        raise UnrecoverableError(f"{refusal.code}: {refusal.detail}") from refusal

    async def _find_message(self, ref: JobRef, data: JsonObject) -> MessageRecord:
        if ref.node_format:
            return await self.store.record_node_job(node_job_to_message(ref, data, self.spec))
        message = await self.store.load(ref.message_id, ref.company_id)
        if message is None:
            raise JobRefused(f"message {ref.message_id} of company {ref.company_id} not found",
                             code="MESSAGE_NOT_FOUND")
        return message

    async def _refused(self, job: JobHandle, ref: JobRef, exc: JobRefused) -> None:
        """Make a refused job seen: the log, a metric, a process event."""
        log.error("job %s on %s refused: %s: %s", job.id, self.spec.name, exc.code, exc.detail)
        metrics.SEND_JOBS_REFUSED.labels(self.spec.name, exc.code).inc()
        if self.events is not None:
            await self.events.record("send_job.refused", {
                "queue": self.spec.name, "job_id": job.id, "code": exc.code, "detail": exc.detail,
                "company_id": ref.company_id, "external_ref": ref.external_ref}, "error")

    async def _defer(self, job: JobHandle, token: str, message: MessageRecord, defer: DeferSend) -> NoReturn:
        self._log_deferral(message, defer)
        await job.moveToDelayed(int(time.time() * 1000) + defer.delay_ms, token)
        if (defer.wake_on is not None and self.wakeups is not None and job.id is not None
                and self.wakeups.note(defer.wake_on, str(job.id), defer.checked_at)):
            await self._promote(job)  # it came true while we were deferring
        raise DelayedError(defer.detail) from defer

    @staticmethod
    async def _promote(job: JobHandle) -> None:
        try:
            await job.promote()
        except TypeError as exc:  # bullmq's "not in the delayed state": it already runs again
            log.debug("job %s not promoted: %s", job.id, exc)

    def _log_deferral(self, message: MessageRecord, defer: DeferSend) -> None:
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

    async def _retry_or_fail(self, job: JobHandle, token: str, message: MessageRecord,
                             exc: RetryableSendError) -> None:
        attempts_allowed = as_int((job.opts or {}).get("attempts", self.spec.attempts) or 1)
        # A provider-given delay moves the job without BullMQ counting an attempt, so those
        # retries are counted in the job's own data; the budget covers both kinds.
        data = dict(job.data or {})
        delayed_retries = as_int(data.get(DELAYED_RETRIES_KEY, 0))
        if job.attemptsMade + delayed_retries + 1 >= attempts_allowed:
            code = exc.code or "RETRIES_EXHAUSTED"
            await self._fail_sent(job, token, message, code, exc.provider_title, exc.details)
            # Fail the job now too (BullMQ alone would schedule another try: it does not count
            # the provider-delayed ones), so it shows among failed jobs and can be retried.
            raise UnrecoverableError(f"{code}: {exc.provider_title} (out of attempts)") from exc
        if exc.retry_after_ms is not None:
            # The provider said how long to wait: honour it instead of the queue's backoff.
            data[DELAYED_RETRIES_KEY] = delayed_retries + 1
            await job.updateData(data)
            await job.moveToDelayed(int(time.time() * 1000) + exc.retry_after_ms, token)
            raise DelayedError(str(exc)) from exc

    async def _fail(self, message: MessageRecord, code: str, title: str, details: JsonValue) -> None:
        await self.store.record_failed(message, code=str(code), title=title, details=details,
                                       source=self.spec.process_name)

    async def _fail_sent(self, job: JobHandle, token: str, message: MessageRecord, code: str, title: str,
                         details: JsonValue) -> None:
        """``failed`` after the provider call, fenced: a process that lost the message's session
        meanwhile defers the job (no attempt counted) for the new owner, writing nothing."""
        try:
            await self.store.record_failed(message, code=str(code), title=title, details=details,
                                           source=self.spec.process_name, fence=self.outcome_fence)
        except LeaseLost as lost:
            await self._defer(job, token, message, DeferSend(f"{code} not recorded: {lost.detail}",
                                                             delay_ms=FENCED_OUT_RETRY_MS))

    async def _deadline_passed(self, message: MessageRecord, reason: str) -> bool:
        if message.deadline_at is None or message.deadline_at > datetime.now(UTC):
            return False
        await self._fail(message, "DEADLINE_EXCEEDED", f"not sent before its deadline: {reason}",
                         {"detail": f"not sent before its deadline ({message.deadline_at.isoformat()}): {reason}; "
                                    "once the cause is fixed, send it again"})
        return True

