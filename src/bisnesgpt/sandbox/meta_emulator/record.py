"""The emulator's logs: every Cloud API request it answered and every webhook delivery attempt.

Both are in order, bounded, and numbered by ``seq`` so that a reader polls with ``since``;
tests, benchmarks and the chaos checker read them through ``GET /_emulator/requests`` and
``GET /_emulator/webhooks``. An entry carries only the keys that apply to it (a refused send
has ``error_code`` and no ``wamid``), so the entry types are ``TypedDict``s with optional keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, Literal, Required, TypedDict, TypeVar, Unpack

from bisnesgpt.core.jsontypes import JsonObject, JsonValue

Profile = Literal["meta", "d360", "any"]
Operation = Literal["send", "mark_read", "media_upload", "media_retrieve", "media_delete", "media_download",
                    "phone_number", "waba_phone_numbers", "health_status", "unknown"]
DeliveryKind = Literal["status", "inbound", "raw"]


class RequestFields(TypedDict, total=False):
    """What a request was: where it went and what the handler learnt about it."""

    method: Required[str]
    path: Required[str]
    profile: Required[Profile]
    operation: Required[Operation]
    phone_number_id: Required[str | None]
    received_ts: float
    body: JsonObject
    type: str
    to: JsonValue
    wa_id: str


class Created(TypedDict, total=False):
    """What an accepted request made or touched (the message, the media and its size)."""

    message_id: JsonValue
    wamid: str
    failed_code: int | None
    media_id: str
    size: int
    # A send by media id: the sha256 (hex) of the bytes the recipient gets.
    media_sha256: str


class Outcome(Created, total=False):
    """How the emulator answered: the status, then the error or what was created."""

    http_status: Required[int]
    error_code: int
    error_subcode: int


class LoggedRequest(RequestFields, Outcome, total=False):
    """One entry of ``GET /_emulator/requests``."""

    seq: Required[int]
    ts: Required[float]


WebhookSummary = TypedDict("WebhookSummary", {
    "wamid": str, "status": str, "recipient": str, "from": str, "note": str,
}, total=False)
"""What a webhook was about (a status of a wamid, an inbound message, a raw payload's note)."""


class WebhookAttempt(WebhookSummary, total=False):
    """One entry of ``GET /_emulator/webhooks``: a delivery attempt and how it went."""

    operation: Required[Literal["webhook"]]
    kind: Required[DeliveryKind]
    url: Required[str]
    http_status: Required[int | None]
    error: Required[str | None]
    latency_ms: Required[float]
    attempt: Required[int]
    delivery: Required[int]
    seq: Required[int]
    ts: Required[float]


Entry = TypeVar("Entry", LoggedRequest, WebhookAttempt)


class SequencedLog(Generic[Entry]):
    """Entries in order, numbered from 1, the oldest dropped beyond ``limit``."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self.entries: list[Entry] = []
        self.next_seq = 1

    def _append(self, entry: Entry) -> Entry:
        self.next_seq += 1
        self.entries.append(entry)
        if len(self.entries) > self.limit:
            del self.entries[: len(self.entries) - self.limit]
        return entry

    def query(self, *, since: int = 0, limit: int | None = None) -> list[Entry]:
        """The entries after sequence number ``since``, at most ``limit`` of them."""
        return self._select(since, limit, lambda _entry: True)

    def _select(self, since: int, limit: int | None, wanted: Callable[[Entry], bool]) -> list[Entry]:
        out: list[Entry] = []
        for entry in self.entries:
            if entry["seq"] > since and wanted(entry):
                out.append(entry)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def clear(self) -> None:
        """Forget every entry (numbering goes on, so a reader's ``since`` stays valid)."""
        self.entries.clear()


class RequestLog(SequencedLog[LoggedRequest]):
    """Every Cloud API request the emulator answered."""

    def add(self, fields: RequestFields, **outcome: Unpack[Outcome]) -> LoggedRequest:
        """Log one answered request; the entry gets the next ``seq`` and the wall clock ``ts``."""
        return self._append({**fields, **outcome, "seq": self.next_seq, "ts": time.time()})

    def select(self, *, since: int = 0, operation: str | None = None, phone_number_id: str | None = None,
               limit: int | None = None, with_body: bool = False) -> list[LoggedRequest]:
        """The entries after ``since`` of one operation and/or phone, bodies left out unless asked for."""
        def wanted(entry: LoggedRequest) -> bool:
            return ((operation is None or entry["operation"] == operation)
                    and (phone_number_id is None or entry["phone_number_id"] == phone_number_id))

        found = self._select(since, limit, wanted)
        return found if with_body else [_without_body(entry) for entry in found]


def _without_body(entry: LoggedRequest) -> LoggedRequest:
    trimmed = entry.copy()
    trimmed.pop("body", None)
    return trimmed


class WebhookLog(SequencedLog[WebhookAttempt]):
    """Every webhook delivery attempt (retries included), with its status and latency."""

    def add(self, *, kind: DeliveryKind, url: str, http_status: int | None, error: str | None, latency_ms: float,
            attempt: int, delivery: int, summary: WebhookSummary) -> WebhookAttempt:
        """Log one attempt; the entry gets the next ``seq`` and the wall clock ``ts``."""
        return self._append({"operation": "webhook", "kind": kind, "url": url, "http_status": http_status,
                             "error": error, "latency_ms": latency_ms, "attempt": attempt, "delivery": delivery,
                             **summary, "seq": self.next_seq, "ts": time.time()})
