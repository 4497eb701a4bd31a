"""Graph API errors: one typed hierarchy, classified by ``error.code``.

The Cloud API answers failures with HTTP 4xx/5xx and the Graph envelope
``{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}``.
``CloudApiError.from_response`` turns such an answer into the subclass that says what the
engine must do about it:

* ``RetryableGraphError`` — the request was rejected or the service hiccuped; try again
  with backoff and jitter, honouring ``X-Business-Use-Case-Usage``. (A read timeout is
  retried too: Meta has no idempotency key, so that one case may duplicate a message.)
* ``RecipientBackoffError`` — 131056, pair rate: back off for that recipient only.
* ``PhoneAuthError`` — 190/0, the token is bad: the message fails and the phone is marked
  ``error`` with the reason.
* ``PhoneBlockedError`` — 368/131031, the account is restricted or locked: the phone's
  sending is paused and a ``critical`` event recorded.
* ``PermanentGraphError`` — everything else the provider refused for good.
"""

from __future__ import annotations

import json
import re

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.jsontypes import JsonObject, JsonValue

# Codes whose requests provably did not go out, or that Meta documents as temporary.
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131057, 133004})
RECIPIENT_BACKOFF_CODES = frozenset({131056})
PHONE_AUTH_CODES = frozenset({0, 190})
PHONE_BLOCKED_CODES = frozenset({368, 131031})
# Codes that mean "this message will never go through as sent" (listed for documentation;
# any unknown 4xx code is treated the same way).
PERMANENT_CODES = frozenset({
    3, 10, 100, 200, 131005, 131008, 131009, 131021, 131026, 131037, 131042, 131045, 131047,
    131051, 131052, 131053, 133000, 133010, 135000,
})

_CODE_PREFIX = re.compile(r"^\(#\d+\)\s*")


class CloudApiError(BisnesgptError):
    """A failure talking to the Cloud API (Meta or 360dialog).

    ``error`` is the Graph ``error`` object as answered (or ``{"http_status": …}`` when the
    answer had none): it is kept on the failed message as its details.
    """

    def __init__(
        self,
        detail: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        http_status: int | None = None,
        error_title: str | None = None,
        fbtrace_id: str | None = None,
        error: JsonObject | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.error_title = error_title or detail
        self.fbtrace_id = fbtrace_id
        self.error = error or {}
        self.retry_after_ms = retry_after_ms

    @property
    def code_text(self) -> str:
        """The code as stored on a failed message (``131026``, ``HTTP_502``, ``TIMEOUT``)."""
        if self.code is not None:
            return str(self.code)
        if self.http_status is not None:
            return f"HTTP_{self.http_status}"
        return "NETWORK"

    @staticmethod
    def from_response(http_status: int, body: bytes, headers: dict[str, str] | None = None) -> CloudApiError:
        """Classify an error answer; a body that is not the Graph envelope is still handled."""
        error = _graph_error(body)
        code = _int_or_none(error.get("code"))
        message = str(error.get("message") or f"HTTP {http_status}")
        fbtrace_id = error.get("fbtrace_id")
        cls = classify(code, http_status)
        return cls(
            message, code=code, subcode=_int_or_none(error.get("error_subcode")), http_status=http_status,
            error_title=str(error.get("error_user_title") or _CODE_PREFIX.sub("", message) or message),
            fbtrace_id=fbtrace_id if isinstance(fbtrace_id, str) else None,
            error=error or {"http_status": http_status}, retry_after_ms=retry_after_from_headers(headers or {}),
        )


def _graph_error(body: bytes) -> JsonObject:
    """The ``error`` object of a Graph error envelope; empty for any other body."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


class RetryableGraphError(CloudApiError):
    """Cloud API temporarily refused the request."""


class RecipientBackoffError(CloudApiError):
    """Too many messages to this recipient."""


class PermanentGraphError(CloudApiError):
    """Cloud API rejected the request."""


class PhoneAuthError(PermanentGraphError):
    """Cloud API credentials rejected."""


class PhoneBlockedError(PermanentGraphError):
    """Business account restricted."""


class TransportError(RetryableGraphError):
    """The request did not complete (connect error, timeout, broken connection)."""


_BY_CODE: dict[frozenset[int], type[CloudApiError]] = {}


def classify(code: int | None, http_status: int) -> type[CloudApiError]:
    """The error class for a Graph ``error.code`` (or, without one, the HTTP status)."""
    if code is not None:
        for codes, cls in _BY_CODE.items():
            if code in codes:
                return cls
    elif http_status == 401:
        return PhoneAuthError
    if http_status >= 500 or http_status == 429:
        return RetryableGraphError
    return PermanentGraphError


_BY_CODE.update({
    RECIPIENT_BACKOFF_CODES: RecipientBackoffError,
    PHONE_AUTH_CODES: PhoneAuthError,
    PHONE_BLOCKED_CODES: PhoneBlockedError,
    RETRYABLE_CODES: RetryableGraphError,
})


def retry_after_from_headers(headers: dict[str, str]) -> int | None:
    """Milliseconds until access is regained, from ``X-Business-Use-Case-Usage`` (or ``Retry-After``).

    The usage header maps business ids to lists of usage objects, each possibly carrying
    ``estimated_time_to_regain_access`` in minutes; the largest wins.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    best: int | None = None
    raw = lowered.get("x-business-use-case-usage")
    if raw:
        try:
            usage = json.loads(raw)
        except ValueError:
            usage = None
        if isinstance(usage, dict):
            for entries in usage.values():
                for entry in entries if isinstance(entries, list) else [entries]:
                    if isinstance(entry, dict):
                        minutes = _int_or_none(entry.get("estimated_time_to_regain_access"))
                        if minutes is not None and minutes > 0:
                            best = max(best or 0, minutes * 60_000)
    retry_after = lowered.get("retry-after")
    if retry_after and retry_after.strip().isdigit():
        best = max(best or 0, int(retry_after.strip()) * 1000)
    return best


def _int_or_none(value: JsonValue) -> int | None:
    if value is None or value == "" or isinstance(value, list | dict):
        return None
    try:
        return int(value)
    except ValueError:
        return None
