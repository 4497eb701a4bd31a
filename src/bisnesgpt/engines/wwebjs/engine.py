"""The WhatsApp-Web engine as the shared send worker sees it (``messaging.send_processor.Engine``).

``before_send`` refuses what WhatsApp Web cannot send (permanently, before the claim) and
defers while the session is not ``ready`` here: the message stays ``queued``, the job waits
with a backoff that grows with the message's age (no attempt is used) until it is sent or
its deadline passes; the session becoming ready cuts that wait short (``messaging.wakeups``).
``send`` paces per session, sends through the session's driver and maps driver errors to
the worker's outcomes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import LeaseLost
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.antiban import AntiBan
from bisnesgpt.engines.wwebjs.antiban_settings import AntiBanPolicy
from bisnesgpt.engines.wwebjs.driver import OutgoingMessage, SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, NotConnected, SendRejected, SendTimeout
from bisnesgpt.engines.wwebjs.manager import SessionManager
from bisnesgpt.engines.wwebjs.outgoing import to_outgoing
from bisnesgpt.engines.wwebjs.pacing import SessionPacer
from bisnesgpt.engines.wwebjs.session import ManagedSession
from bisnesgpt.engines.wwebjs.stored_media import StoredMediaReader
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.send_processor import SendReceipt
from bisnesgpt.messaging.store import MessageRecord

log = logging.getLogger(__name__)

# A job waits in-process for its pacing slot up to this long; beyond, it is delayed in Redis.
MAX_INLINE_WAIT = 2.0
OTHER_OWNER_RETRY_MS = 1_000
MAX_DELAY_MS = 30_000  # a message's own delayMs, at most (the API allows no more)
# What to do about a failure, for the failed message's ``error.details.detail`` (a refused
# media URL's own detail already names its setting).
NEXT_STEPS = {
    "RECIPIENT_NOT_ON_WHATSAPP": "check the number and its country code: it has no WhatsApp account",
    "NOT_ON_WHATSAPP": "check the number and its country code: it has no WhatsApp account",
    "MEDIA_TOO_LARGE": "send a smaller file, or a link to it in a text message",
    "MEDIA_DOWNLOAD_FAILED": "check that the media URL answers 200 to a GET from this server",
    "INVALID_PAYLOAD": "fix the message (the request schemas are at /docs)",
    "SEND_TIMEOUT": "WhatsApp did not confirm it in time: check the session (GET /api/sessions/{company}/{phone}) "
                    "and retry the message",
    "CONNECT_FAILED": "the session cannot reach WhatsApp (with WWEBJS_DRIVER=sandbox: is the sandbox network at "
                      "WWEBJS_SANDBOX_URL running?)",
    "DRIVER_ERROR": "see logs/wwebjs-error.log",
}


def failure_details(exc: DriverError) -> JsonObject:
    """What a message failed by ``exc`` keeps as ``error.details``: the detail and what to do."""
    step = NEXT_STEPS.get(exc.code)
    return {"detail": f"{exc.detail}; {step}" if step else exc.detail}


def ready_condition(message: MessageRecord | SessionKey) -> str:
    """The wakeup condition "this session is ready" (``messaging.wakeups``)."""
    key = message if isinstance(message, SessionKey) else SessionKey(message.company_id, message.phone_index)
    return f"ready:{key}"


class WebEngine:
    """Implements the worker helper's ``Engine`` protocol for WhatsApp Web sessions."""

    provider = "wwebjs"

    def __init__(self, settings: Settings, manager: SessionManager, *, db: Database | None = None,
                 stored_media: StoredMediaReader | None = None) -> None:
        self.settings = settings
        self.manager = manager
        # Media uploaded to the gateway (``med_…``) is read from the media store; None: not offered.
        self.stored_media = stored_media
        self.pacer = SessionPacer(settings.wwebjs_max_messages_per_second, settings.wwebjs_send_jitter_ms)
        # The caps and the on-WhatsApp check read the phone's messages (none needed when they are off).
        self.antiban = AntiBan(settings, db)

    def _defer_ms(self, message: MessageRecord) -> int:
        """Grows with how long the message has waited: base, then about half its age, capped."""
        queued = message.queued_at or message.created_at
        age_ms = (datetime.now(UTC) - queued).total_seconds() * 1000
        return int(min(self.settings.wwebjs_not_ready_retry_max_ms,
                       max(self.settings.wwebjs_not_ready_retry_ms, age_ms / 2)))

    def _check_ready(self, message: MessageRecord) -> None:
        readiness = self.manager.readiness(SessionKey(message.company_id, message.phone_index))
        if readiness.state == "ready":
            return
        if readiness.state == "other_owner":
            raise DeferSend(readiness.detail, delay_ms=OTHER_OWNER_RETRY_MS)
        raise DeferSend(f"session {message.company_id}:{message.phone_index} not ready: {readiness.detail}",
                        delay_ms=self._defer_ms(message), wake_on=ready_condition(message))

    async def before_send(self, message: MessageRecord) -> None:
        """Refuse what WhatsApp Web cannot send; defer while the session is not ready here."""
        to_outgoing(message)  # raises PermanentSendError for what can never be sent
        self._check_ready(message)
        await self.antiban.check_caps(message)

    async def send(self, message: MessageRecord) -> SendReceipt:
        """Pace, send through the session's driver, and map driver errors onto the worker's outcomes."""
        outgoing = await self._with_stored_media(message, to_outgoing(message))
        key = SessionKey(message.company_id, message.phone_index)
        policy = await self.antiban.policy(message.company_id, message.phone_index)
        wait = self.pacer.reserve(key, max_wait=MAX_INLINE_WAIT, jitter_ms=policy.send_jitter_ms)
        if wait is None:
            raise DeferSend("paced", delay_ms=int(self.pacer.delay_until_free(key) * 1000) + 1)
        if wait > 0:
            await asyncio.sleep(wait)
        readiness = self.manager.readiness(key)
        if readiness.session is None or readiness.state != "ready":
            raise DeferSend(f"session not ready: {readiness.detail}", delay_ms=self._defer_ms(message),
                            wake_on=ready_condition(message))
        try:
            await self._before_driver(readiness.session, message, outgoing, policy)
            await self.manager.fence_send(key)  # not one send after the lease is gone (fencing)
            sent = await readiness.session.send(outgoing)
        except LeaseLost as exc:
            self.manager.lease_lost(key)
            raise DeferSend(exc.detail, delay_ms=self._defer_ms(message), wake_on=ready_condition(message)) from exc
        except NotConnected as exc:
            raise DeferSend(exc.detail, delay_ms=self._defer_ms(message), wake_on=ready_condition(message)) from exc
        except SendTimeout as exc:
            raise RetryableSendError(exc.detail, code=exc.code, title=exc.summary,
                                     details=failure_details(exc)) from exc
        except SendRejected as exc:
            # A refused media URL is the operator's setting to change: a warning; the rest is the message's.
            log.log(logging.WARNING if exc.code == "MEDIA_URL_REFUSED" else logging.INFO,
                    "message %s to %s failed: %s: %s", message.message_id, message.chat_id, exc.code, exc.detail)
            raise PermanentSendError(exc.detail, code=exc.code, title=exc.summary,
                                     details=failure_details(exc)) from exc
        except DriverError as exc:
            if exc.retryable:
                raise RetryableSendError(exc.detail, code=exc.code, title=exc.summary,
                                         details=failure_details(exc)) from exc
            raise PermanentSendError(exc.detail, code=exc.code, title=exc.summary,
                                     details=failure_details(exc)) from exc
        return SendReceipt(sent.id, {"duplicate": sent.duplicate, "timestamp": sent.timestamp})

    async def _with_stored_media(self, message: MessageRecord, outgoing: OutgoingMessage) -> OutgoingMessage:
        if outgoing.media is None or outgoing.media.media_id is None:
            return outgoing
        if self.stored_media is None:
            raise PermanentSendError("this wwebjs process cannot read the media store", code="MEDIA_NOT_FOUND",
                                     title="Uploaded media not found")
        return await self.stored_media.fill(message.company_id, outgoing)

    async def _before_driver(self, session: ManagedSession, message: MessageRecord, outgoing: OutgoingMessage,
                             policy: AntiBanPolicy) -> None:
        """The on-WhatsApp check of a new number, then "typing…" before a text (``antiban``)."""
        if policy.check_on_whatsapp and await self.antiban.opens_chat(message, policy):
            number = message.chat_id.partition("@")[0]
            on = self.antiban.cached(number)
            if on is None:
                answers = await session.ready_driver().check_numbers([number])
                self.antiban.remember(answers)
                on = answers.get(number, False)
            if not on:
                raise SendRejected(f"{number} is not on WhatsApp (checked before the first message; nothing was "
                                   "sent)", code="NOT_ON_WHATSAPP")
        pacing = (message.payload or {}).get("pacing")
        hints = pacing if isinstance(pacing, dict) else {}
        delay_ms = hints.get("delayMs")
        if isinstance(delay_ms, int) and delay_ms > 0:
            await asyncio.sleep(min(delay_ms, MAX_DELAY_MS) / 1000)
        wanted = hints.get("simulateTyping")
        pause = self.antiban.typing_seconds(outgoing.text if outgoing.kind == "text" else None,
                                            wanted if isinstance(wanted, bool) else None, policy)
        if pause > 0:
            driver = session.ready_driver()
            await driver.typing(message.chat_id, "composing")
            await asyncio.sleep(pause)
            await driver.typing(message.chat_id, "paused")
