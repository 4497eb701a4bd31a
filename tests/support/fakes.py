"""In-memory stand-ins for the send processor's collaborators (no PostgreSQL, no Redis).

``InMemorySendStore`` implements ``SendStore`` with the state rules of ``PgSendStore``'s
statements (a claim only from accepted/queued/sending, and for an ordered message only when
nothing earlier of its chat is unfinished; a Node job's row recorded once per queue and job
id);
``FakeJob`` implements ``JobHandle`` and records what the processor did to it;
``ScriptedEngine`` is an ``Engine`` that plays a script of answers per call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.messaging.errors import EarlierMessagePending, JobRefused
from bisnesgpt.messaging.send_processor import SendReceipt
from bisnesgpt.messaging.store import MessageRecord, NewOutboundMessage

CLAIMABLE = frozenset({"accepted", "queued", "sending"})


def message_record(message_id: str = "m1", *, company_id: str = "acme", status: str = "queued",
                   **overrides: Any) -> MessageRecord:
    """A stored outbound text message, as ``PgSendStore.load`` would return it."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": 1, "message_id": message_id, "company_id": company_id, "phone_index": 0, "direction": "outbound",
        "provider": "test", "connection_type": "wwebjs", "chat_id": "60123456789@c.us", "message_type": "text",
        "content": "hi", "media_url": None, "media_id": None, "media_mime_type": None, "media_filename": None,
        "payload": {"to": "60123456789", "type": "text", "text": {"body": "hi"}}, "raw": None, "status": status,
        "external_id": None, "context_message_id": None, "error_code": None, "error_title": None,
        "error_details": None, "attempts": 0, "idempotency_key": None, "queue_name": "test-messages",
        "process_name": "test", "source": "api", "deadline_at": None, "created_at": now, "updated_at": now,
        "queued_at": now, "sent_at": None, "delivered_at": None, "read_at": None, "failed_at": None,
        "chat_seq": None,
        "external_ref": None,
    }
    values.update(overrides)
    return MessageRecord(**values)


@dataclass
class InMemorySendStore:
    """``SendStore`` over a dict of messages; every call is also appended to ``calls``."""

    messages: dict[str, MessageRecord] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    refuse_claims: bool = False
    sources: list[str] = field(default_factory=list)
    unknown_companies: frozenset[str] = frozenset()

    def add(self, record: MessageRecord) -> MessageRecord:
        """Store a message (replacing one with the same id)."""
        self.messages[record.message_id] = record
        return record

    async def load(self, message_id: str, company_id: str | None) -> MessageRecord | None:
        """The message when its company matches."""
        self.calls.append(("load", message_id))
        record = self.messages.get(message_id)
        if record is None or (company_id is not None and record.company_id != company_id):
            return None
        return record

    async def record_node_job(self, new: NewOutboundMessage) -> MessageRecord:
        """Stored ``queued`` unless its queue has a message for the job id: that one when its
        content is the same, else ``JobRefused`` (JOB_ID_COLLISION); companies in ``unknown_companies``
        are refused with COMPANY_NOT_FOUND."""
        self.calls.append(("record_node_job", str(new.external_ref)))
        if new.company_id in self.unknown_companies:
            raise JobRefused(f"company {new.company_id!r} does not exist", code="COMPANY_NOT_FOUND")
        for record in self.messages.values():
            if new.external_ref is not None and (record.queue_name, record.external_ref) == (
                    new.queue_name, new.external_ref):
                if (record.company_id, record.chat_id, record.payload) != (new.company_id, new.chat_id, new.payload):
                    raise JobRefused(f"job id {new.external_ref} reused", code="JOB_ID_COLLISION")
                return record
        self.calls.append(("record", new.message_id))
        fields = {f.name: getattr(new, f.name) for f in dataclasses.fields(new)}
        return self.add(message_record(id=len(self.messages) + 1, status="queued", **fields))

    async def claim(self, message: MessageRecord, *, source: str, process_name: str) -> int | None:
        """``sending`` with one more attempt, unless refused or already past sending."""
        self.calls.append(("claim", message.message_id))
        self.sources.append(source)
        current = self.messages[message.message_id]
        earlier = [m for m in self.messages.values()
                   if current.chat_seq is not None and m.chat_seq is not None and m.chat_seq < current.chat_seq
                   and (m.company_id, m.phone_index, m.chat_id) == (current.company_id, current.phone_index,
                                                                    current.chat_id) and m.status in CLAIMABLE]
        if earlier and current.status in CLAIMABLE:
            raise EarlierMessagePending(min(earlier, key=lambda m: m.chat_seq or 0).message_id)
        if self.refuse_claims or current.status not in CLAIMABLE:
            return None
        self.add(dataclasses.replace(current, status="sending", attempts=current.attempts + 1,
                                     process_name=process_name))
        return current.attempts + 1

    async def record_sent(self, message: MessageRecord, external_id: str, detail: JsonObject, *,
                          source: str) -> None:
        """``sent`` with the provider id (the detail kept in ``error_details`` for the test to see)."""
        self.calls.append(("sent", message.message_id))
        self.sources.append(source)
        current = self.messages[message.message_id]
        self.add(dataclasses.replace(current, status="sent", external_id=external_id, error_details=detail))

    async def record_failed(self, message: MessageRecord, *, code: str, title: str, details: JsonValue,
                            source: str, fence: Any = None) -> None:
        """``failed`` with the code, title and details (unless ``fence``, given no connection, refuses)."""
        if fence is not None:
            await fence(None, message)
        self.calls.append(("failed", message.message_id))
        self.sources.append(source)
        current = self.messages[message.message_id]
        self.add(dataclasses.replace(current, status="failed", error_code=code, error_title=title,
                                     error_details=details))

    def status(self, message_id: str) -> str:
        """The message's status now."""
        return self.messages[message_id].status


@dataclass
class FakeJob:
    """A ``JobHandle``: what the processor moved, updated and promoted is kept in lists."""

    data: JsonObject | None
    id: str | None = "job-1"
    opts: JsonObject | None = field(default_factory=lambda: _options(attempts=3))
    attemptsMade: int = 0
    delayed_until: list[int] = field(default_factory=list)
    updates: list[JsonObject] = field(default_factory=list)
    promotions: int = 0
    promote_error: Exception | None = None

    async def moveToDelayed(self, timestamp: int, token: str) -> None:
        """Record the timestamp the job was delayed to."""
        self.delayed_until.append(timestamp)

    def updateData(self, data: JsonObject) -> Awaitable[object]:
        """Record the new data (and keep it, as bullmq does)."""
        self.data = data
        self.updates.append(data)
        return _done()

    async def promote(self) -> None:
        """Count a promotion, or raise ``promote_error``."""
        if self.promote_error is not None:
            raise self.promote_error
        self.promotions += 1


def _options(**options: JsonValue) -> JsonObject:
    return dict(options)


async def _done() -> None:
    return None


@dataclass
class ScriptedEngine:
    """An ``Engine``: each call takes the next step of its script (an exception is raised, None passes).

    A send past the end of ``send_script`` succeeds with external id ``ext-<message id>``.
    """

    provider: str = "test"
    before_script: list[BaseException | None] = field(default_factory=list)
    send_script: list[BaseException | SendReceipt | None] = field(default_factory=list)
    before_calls: int = 0
    send_calls: int = 0

    async def before_send(self, message: MessageRecord) -> None:
        """Raise the script's next exception, if any."""
        step = self.before_script[self.before_calls] if self.before_calls < len(self.before_script) else None
        self.before_calls += 1
        if step is not None:
            raise step

    async def send(self, message: MessageRecord) -> SendReceipt:
        """Raise or answer the script's next step."""
        step = self.send_script[self.send_calls] if self.send_calls < len(self.send_script) else None
        self.send_calls += 1
        if isinstance(step, BaseException):
            raise step
        return step or SendReceipt(external_id=f"ext-{message.message_id}")
