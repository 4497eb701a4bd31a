"""The Cloud API send engine: what the shared worker helper calls for each ``meta-messages`` job.

``before_send`` (nothing sent yet): refuses what the Cloud API cannot send, enforces the
24-hour window (``TEMPLATE_REQUIRED``, before Meta is called), and paces — phone
throughput, recipient spacing and the send gate in one Redis call; a job that must wait is
delayed, not spun.

``send``: one request through the phone's transport profile (media uploaded to the
gateway first goes to Graph's media endpoint, ``uploads.py``), and the Graph error mapped
onto the helper's outcomes:

=====================================  ==========================================================
Graph answer                           outcome
=====================================  ==========================================================
200                                    ``sent`` with the wamid as ``external_id``; the phone
                                       is ``ready`` (connected)
4, 80007, 130429, 131000, 131016,      retry with exponential backoff and jitter, at least the
131057, 133004, 5xx, timeouts          ``X-Business-Use-Case-Usage`` regain time; ``failed``
                                       with the last code after ``META`` queue attempts
131056                                 this recipient backs off 4^n s (others keep flowing);
                                       the message is delayed without using an attempt
190, 0                                 ``failed``; the phone is marked ``error`` with the reason
368, 131031                            ``failed``; the phone's sending is paused for
                                       ``META_PHONE_PAUSE_SECONDS`` (status ``paused`` with
                                       ``pausedUntil``) and a critical event recorded
anything else (100, 131026, 132xxx…)   ``failed`` with the code and title
=====================================  ==========================================================
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bisnesgpt.config import Settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta import messages
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.errors import (
    CloudApiError,
    PermanentGraphError,
    PhoneAuthError,
    PhoneBlockedError,
    RecipientBackoffError,
    RetryableGraphError,
)
from bisnesgpt.engines.meta.metrics import PACING_DEFERRALS
from bisnesgpt.engines.meta.pacing import Decision, Pacer, rates_for_phone
from bisnesgpt.engines.meta.phones import PhoneCache, change_phone_status
from bisnesgpt.engines.meta.profiles import Credentials, credentials_for_phone
from bisnesgpt.engines.meta.uploads import GraphUploads, uploaded_media_id
from bisnesgpt.engines.meta.window import OpenWindows, TemplateRequired
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.queues import META
from bisnesgpt.messaging.send_processor import SendReceipt
from bisnesgpt.messaging.store import MessageRecord
from bisnesgpt.phones.store import PhoneConfig

# Waits longer than this at the gate are served by delaying the job instead of holding a worker slot.
MAX_GATE_WAIT_MS = 1_000
# A phone recorded connected is not recorded again by this process for this long (seconds).
CONNECTED_RECHECK_S = 30.0
CONNECTED_REASON = "messages are being sent"


def retry_key(message: MessageRecord) -> str:
    """The retry-count key of one queueing of a message (``queued_at`` changes on a re-queue)."""
    queued = message.queued_at.timestamp() if message.queued_at is not None else 0.0
    return f"{message.message_id}:{queued:.6f}"


class ProcessRateLimiter:
    """``META_MAX_MESSAGES_PER_SECOND``: this worker process's overall send rate.

    Evenly spaced slots handed out in order; a caller awaits its slot (at most
    concurrency / rate seconds). Per-phone pacing is separate (Redis, shared).
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        """Take the next slot and sleep until it comes."""
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(eq=False)
class MetaEngine:
    """Implements the worker helper's ``Engine`` protocol for Cloud API phones."""

    provider = "meta"  # unannotated: a class attribute, not a dataclass field

    settings: Settings
    db: Database
    client: CloudApiClient
    pacer: Pacer
    phones: PhoneCache
    events: EventRecorder
    box: SecretBox
    process_limiter: ProcessRateLimiter | None = None
    # Media uploaded to the gateway (``med_…``) goes to Graph's media endpoint first; None: not offered.
    uploads: GraphUploads | None = None
    held: int = field(default=0, init=False)  # jobs waiting in this process for a near slot
    # Phones this process recorded as connected, and when (monotonic): a send that succeeds
    # records ``ready`` at most once per CONNECTED_RECHECK_S per phone, not once per message.
    _connected: dict[tuple[str, int], float] = field(default_factory=dict, init=False)
    # Recipients with a 131056 backoff count (seen by pacing or set here): a send that gets
    # through clears it; for every other recipient there is nothing to clear (no round trip).
    _backed_off: set[tuple[str, int, str]] = field(default_factory=set, init=False)
    windows: OpenWindows = field(init=False)

    def __post_init__(self) -> None:
        """The window check, remembering the open windows it saw (``window.OpenWindows``)."""
        self.windows = OpenWindows(self.db, self.settings.meta_window_cache_seconds)

    async def _phone(self, message: MessageRecord) -> PhoneConfig:
        phone = await self.phones.get(message.company_id, message.phone_index)
        if phone is None:
            raise PermanentSendError(f"no phone {message.phone_index} configured for company {message.company_id} "
                                     "(removed after the message was accepted): add it again and resend",
                                     code="PHONE_NOT_FOUND", title="Phone not configured")
        return phone

    @staticmethod
    def _body(message: MessageRecord) -> messages.Body:
        return messages.body_from_payload(message.payload or {}, contact=message.contact,
                                          group=message.chat_id.endswith("@g.us"))

    async def before_send(self, message: MessageRecord) -> None:
        """Refuse what cannot be sent, pace the message, then check the 24-hour window (nothing sent yet)."""
        body = self._body(message)
        phone = await self._phone(message)
        credentials_for_phone(self.settings, self.box, phone)  # configuration problems fail here, unsent
        await self._pace(message, phone)
        # Checked when the message is about to go (not on every deferral): the window may
        # have opened or closed while it waited.
        if self.settings.meta_enforce_conversation_window and (phone.settings or {}).get("enforce_window", True):
            try:
                await self.windows.check(message.company_id, message.phone_index, message.contact, str(body["type"]))
            except TemplateRequired as exc:
                raise PermanentSendError(exc.detail, code="TEMPLATE_REQUIRED",
                                         title="Template required: the contact has not written in the last 24 hours",
                                         details={**exc.extra, "detail": exc.detail}) from exc

    async def send(self, message: MessageRecord) -> SendReceipt:
        """One request through the phone's profile; Graph errors become the worker's outcomes (table above)."""
        phone = await self._phone(message)
        creds = credentials_for_phone(self.settings, self.box, phone)
        body = self._body(message)
        await self._through_the_gate(message, phone)
        try:
            body = await self._with_graph_media(message, creds, body)
            sent = await self.client.send_message(creds, body)
        except RecipientBackoffError as exc:
            await self._recipient_backoff(message, exc)
            raise AssertionError("unreachable") from exc  # _recipient_backoff always raises
        except PhoneAuthError as exc:
            await self._phone_auth_failed(phone, exc)
            raise _permanent(exc) from exc
        except PhoneBlockedError as exc:
            await self._phone_blocked(phone, exc)
            raise _permanent(exc) from exc
        except RetryableGraphError as exc:
            await self._retry(message, exc)
            raise AssertionError("unreachable") from exc
        except PermanentGraphError as exc:
            raise _permanent(exc) from exc
        await self._through_to(message)
        await self._connected_now(phone)
        return SendReceipt(external_id=sent.wamid, detail=_receipt_detail(creds, sent.wa_id, sent.message_status))

    async def _with_graph_media(self, message: MessageRecord, creds: Credentials,
                                body: messages.Body) -> messages.Body:
        """The body with uploaded gateway media (``med_…``) replaced by its Graph media id."""
        if uploaded_media_id(body) is None:
            return body
        if self.uploads is None:
            raise PermanentSendError("this meta process cannot read the media store", code="MEDIA_NOT_FOUND",
                                     title="Uploaded media not found")
        return await self.uploads.resolve(message.company_id, creds, body)

    async def _pace(self, message: MessageRecord, phone: PhoneConfig) -> None:
        """Return when the message may go; raise DeferSend when it should wait in the queue.

        A slot less than ``META_PACING_HOLD_MS`` away is waited for here (at most
        ``META_PACING_HOLD_JOBS`` such jobs per process): a delayed job re-enters the queue
        behind every fresh job, so near slots would otherwise be missed during a burst.
        """
        rates = rates_for_phone(self.settings, phone.settings)
        for _ in range(3):
            decision = await self.pacer.acquire(message.company_id, message.phone_index, message.contact,
                                                message.message_id, rates)
            if decision.go:
                await self._gate(message, decision)
                return
            near = decision.wait_ms <= self.settings.meta_pacing_hold_ms
            holdable = near and decision.reason in ("phone", "recipient")
            if not holdable or self.held >= self.settings.meta_pacing_hold_jobs:
                break
            self.held += 1
            try:
                await asyncio.sleep(decision.wait_ms / 1000)
            finally:
                self.held -= 1
        PACING_DEFERRALS.labels(decision.reason).inc()
        raise DeferSend(f"pacing: {decision.reason}", delay_ms=decision.wait_ms)

    async def _gate(self, message: MessageRecord, decision: Decision) -> None:
        """Wait for the phone's shared send gate slot that pacing took with the message's go."""
        if decision.backoff_known:
            self._backed_off.add((message.company_id, message.phone_index, message.contact))
        if decision.gate_ms > MAX_GATE_WAIT_MS:  # a backlog of the phone: let the job wait in the queue, not here
            PACING_DEFERRALS.labels("gate").inc()
            raise DeferSend("pacing: gate", delay_ms=decision.gate_ms)
        if decision.gate_ms > 0:
            await asyncio.sleep(decision.gate_ms / 1000)

    async def _through_the_gate(self, message: MessageRecord, phone: PhoneConfig) -> None:
        """Space the moments requests leave this process (its cap; the phone's gate was taken with pacing)."""
        if self.process_limiter is not None:
            await self.process_limiter.wait()

    async def _through_to(self, message: MessageRecord) -> None:
        """A message got through to its recipient: the next 131056 starts again at 4^1 s."""
        key = (message.company_id, message.phone_index, message.contact)
        if key in self._backed_off:
            self._backed_off.discard(key)
            await self.pacer.clear_recipient_backoff(*key)

    # --- outcomes -------------------------------------------------------------------------------

    async def _recipient_backoff(self, message: MessageRecord, exc: RecipientBackoffError) -> None:
        limit = self.settings.meta_pair_backoff_max_exponent
        self._backed_off.add((message.company_id, message.phone_index, message.contact))
        n, delay_ms = await self.pacer.back_off_recipient(message.company_id, message.phone_index, message.contact,
                                                          limit)
        if n > limit:
            raise PermanentSendError(f"{exc.detail} (still limited after {limit} backoffs)", code=exc.code_text,
                                     title=exc.error_title, details=exc.error) from exc
        PACING_DEFERRALS.labels("pair_rate").inc()
        raise DeferSend(f"131056 pair rate: {message.contact} backs off {delay_ms} ms (n={n})", delay_ms=delay_ms)

    async def _retry(self, message: MessageRecord, exc: CloudApiError) -> None:
        # Counted here, not by BullMQ: a provider-given delay moves the job without using an attempt.
        # Keyed by the queueing moment too: an operator's re-queue starts a fresh count.
        tries = await self.pacer.count_retry(retry_key(message))
        if tries >= META.attempts:
            raise PermanentSendError(f"{exc.detail} (gave up after {tries} attempts)", code=exc.code_text,
                                     title=exc.error_title, details=exc.error) from exc
        backoff = min(self.settings.meta_retry_max_ms, self.settings.meta_retry_base_ms * 2 ** (tries - 1))
        delay = int(backoff * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security
        if exc.retry_after_ms is not None:
            delay = max(delay, exc.retry_after_ms)
        raise RetryableSendError(exc.detail, code=exc.code_text, title=exc.error_title, retry_after_ms=delay,
                                 details=exc.error) from exc

    async def _connected_now(self, phone: PhoneConfig) -> None:
        """A send went through: the phone is connected (``ready``), whatever it showed before."""
        key = (phone.company_id, phone.phone_index)
        now = time.monotonic()
        if now - self._connected.get(key, -CONNECTED_RECHECK_S) < CONNECTED_RECHECK_S:
            return
        self._connected[key] = now
        async with self.db.transaction() as conn:
            await change_phone_status(conn, phone, "ready", reason=CONNECTED_REASON)

    async def _phone_auth_failed(self, phone: PhoneConfig, exc: CloudApiError) -> None:
        self._connected.pop((phone.company_id, phone.phone_index), None)
        reason = f"Cloud API rejected the credentials ({exc.code_text}): {exc.error_title}"
        async with self.db.transaction() as conn:
            await change_phone_status(conn, phone, "error", reason=reason, code=exc.code_text)
        self.phones.forget(phone.company_id, phone.phone_index)
        await self.events.record("meta.phone.auth_failed", {
            "companyId": phone.company_id, "phoneIndex": phone.phone_index, "code": exc.code_text,
            "title": exc.error_title}, "error")

    async def _phone_blocked(self, phone: PhoneConfig, exc: CloudApiError) -> None:
        self._connected.pop((phone.company_id, phone.phone_index), None)
        seconds = self.settings.meta_phone_pause_seconds
        await self.pacer.pause_phone(phone.company_id, phone.phone_index, seconds)
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        reason = f"sending paused for {seconds} s: account restricted ({exc.code_text}): {exc.error_title}"
        async with self.db.transaction() as conn:
            await change_phone_status(conn, phone, "paused", reason=reason, code=exc.code_text,
                                      extra={"pausedSeconds": seconds, "pausedUntil": until.isoformat()})
        await self.events.record("meta.phone.paused", {
            "companyId": phone.company_id, "phoneIndex": phone.phone_index, "code": exc.code_text,
            "title": exc.error_title, "pausedSeconds": seconds}, "critical")


def _permanent(exc: CloudApiError) -> PermanentSendError:
    return PermanentSendError(exc.detail, code=exc.code_text, title=exc.error_title, details=exc.error)


def _receipt_detail(creds: Credentials, wa_id: str | None, message_status: str | None) -> JsonObject:
    detail: JsonObject = {"profile": creds.profile}
    if wa_id:
        detail["wa_id"] = wa_id
    if message_status:
        detail["message_status"] = message_status
    return detail
