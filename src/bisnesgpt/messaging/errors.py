"""What an engine may raise from ``before_send``/``send``; the send processor acts on the type."""

from __future__ import annotations

import time
from typing import Literal

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.jsontypes import JsonValue

# Why a send job was refused before it had a message to fail (see ``JobRefused``).
RefusalCode = Literal["COMPANY_NOT_FOUND", "PHONE_NOT_FOUND", "JOB_ID_COLLISION", "MESSAGE_NOT_FOUND"]


class SendError(BisnesgptError):
    """Root of engine send failures.

    ``details`` is what a failed message keeps besides its code and title: the provider's
    error document when there is one, else ``{"detail": …}`` (what happened and what to do).
    """


class RetryableSendError(SendError):
    """Try again later with the queue's backoff (consumes an attempt).

    ``retry_after_ms`` overrides the backoff when the provider says how long to wait.
    """

    def __init__(self, detail: str, *, code: str | None = None, title: str | None = None,
                 retry_after_ms: int | None = None, details: JsonValue = None) -> None:
        super().__init__(detail)
        self.code = code
        self.provider_title = title or detail
        self.retry_after_ms = retry_after_ms
        self.details: JsonValue = details if details is not None else {"detail": detail}


class PermanentSendError(SendError):
    """The provider rejected the message for good: it ends ``failed`` with code and title."""

    def __init__(self, detail: str, *, code: str, title: str | None = None, details: JsonValue = None) -> None:
        super().__init__(detail)
        self.code = code
        self.provider_title = title or detail
        self.details: JsonValue = details if details is not None else {"detail": detail}


class JobRefused(SendError):
    """The job names no message it may send: an unknown company or phone, a missing message,
    or a Node job id its queue already used for different content.

    Retrying cannot help, and there is no message of its own to mark ``failed``: the job
    fails at once with ``code`` as its reason (and the processor records an event).
    """

    def __init__(self, detail: str, *, code: RefusalCode) -> None:
        super().__init__(detail)
        self.code: RefusalCode = code


class DeferSend(Exception):
    """Not now, and not the message's fault (pacing, session not ready, recipient backoff).

    Flow control rather than a failure, so outside the error hierarchy: the job is delayed
    by ``delay_ms`` without consuming an attempt and the message keeps its state. Past the
    message's ``deadline_at`` the processor fails it with ``DEADLINE_EXCEEDED``. ``wake_on``
    names the condition it waits for (see ``messaging.wakeups``): when it holds earlier,
    the job is promoted instead of waiting out the delay.
    """

    def __init__(self, detail: str, *, delay_ms: int, wake_on: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.delay_ms = max(1, int(delay_ms))
        self.wake_on = wake_on
        self.checked_at = time.monotonic()  # when the condition was seen not to hold


# A job of an ordered message whose chat has an earlier message unfinished looks again this
# much later (normally such a message has no job: the one before it enqueues it as it ends).
CHAT_ORDER_RECHECK_MS = 1000


class EarlierMessagePending(DeferSend):
    """An ordered message is not sent while a message accepted before it for its chat is unfinished."""

    def __init__(self, waiting_for: str) -> None:
        super().__init__(f"chat order: waiting for message {waiting_for} of the same chat",
                         delay_ms=CHAT_ORDER_RECHECK_MS)
        self.waiting_for = waiting_for
