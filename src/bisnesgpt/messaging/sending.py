"""Accepting a message: the durable outbox write, then the enqueue.

Order of one send (ARCHITECTURE §3):

1. look the Idempotency-Key up, if any (a completed key replays, with the message's status
   now; 409 / 422 answer here);
2. route the phone (404 no config, 422 unknown type, 503 engine disabled: nothing stored),
   and refuse a message type the phone's engine cannot send (422 UNSUPPORTED_MESSAGE_TYPE);
3. one transaction (for the common message that names its recipient and no other message,
   one statement, ``accept_fast``): claim the Idempotency-Key, resolve targets, take the chat's next
   number (an ordered message, ``chat_order``), INSERT the message ``queued`` (+ history +
   event), store the idempotent answer — COMMIT. Only now may a 2xx leave. Claim and
   message commit together: an API killed in between leaves no key behind, so the
   client's retry runs again (never a 409 for a request that died);
4. add the BullMQ job (jobId = message id) — for an ordered message only when it is its
   chat's head; otherwise the message before it enqueues it as it ends. Redis down is not
   an error: the row is durable and the outbox reconciler enqueues it when Redis is back;
5. with ``wait``: poll the row until it is final (sent/failed/…) or the time is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NotRequired, TypedDict

import asyncpg
from prometheus_client import Counter

from bisnesgpt.core.errors import BisnesgptError, QueueUnavailable
from bisnesgpt.core.ids import new_message_id
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.meta.window import check_window
from bisnesgpt.health import metrics
from bisnesgpt.messaging import accept_fast, chat_order, idempotency, store
from bisnesgpt.messaging.capabilities import check_mentions, check_pacing, check_sendable
from bisnesgpt.messaging.drafts import Draft
from bisnesgpt.messaging.idempotency import IdempotencyKey, StoredResponse
from bisnesgpt.messaging.node_jobs import send_job_data
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.messaging.router import MessageRouter, Route
from bisnesgpt.messaging.states import PAST_SENDING, MessageState
from bisnesgpt.messaging.targets import find_message, resolve_draft

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.messaging")

MAX_WAIT_SECONDS = 30.0
WAIT_POLL_SECONDS = 0.05
# ?wait= answers once the message is past sending (sent or finished).
FINAL_FOR_WAIT = PAST_SENDING


ENQUEUE_DEFERRED = Counter("bisnesgpt_enqueue_deferred_total",
                           "Messages stored while their queue was unreachable (the outbox reconciler enqueues them)",
                           ["queue"])


class ErrorSummary(TypedDict):
    """A failed message's code and title, as a send answer shows them."""

    code: str | None
    title: str | None


class SendAnswer(TypedDict):
    """The JSON body of a send: accepted (202), or final after ``?wait=`` (200, with the outcome)."""

    success: bool
    messageId: str
    status: MessageState
    process: str
    queueName: str
    externalId: NotRequired[str | None]
    error: NotRequired[ErrorSummary | None]


@dataclass(frozen=True)
class SendRequest:
    """One message to accept for a company's phone, with the request's key and ``?wait=``."""

    company_id: str
    phone_index: int
    draft: Draft
    # False when the client did not name a phone: a reaction/edit/delete then goes out on
    # the phone its target message belongs to.
    phone_index_explicit: bool = True
    idempotency: IdempotencyKey | None = None
    wait_seconds: float = 0.0
    source: str = "api"
    # Per-chat order for this message; None: the phone's setting (``ordered_sends``).
    ordered: bool | None = None


@dataclass(frozen=True)
class SendOutcome:
    """The HTTP answer to a send (``replayed``: the stored answer of an earlier request with the key)."""

    status_code: int
    body: SendAnswer
    replayed: bool = False
    enqueued: bool = field(default=False, compare=False)


def accepted_body(message_id: str, route_process: str, queue_name: str,
                  status: MessageState = "queued") -> SendAnswer:
    """The 202 answer: the message is stored and (being) queued."""
    return {"success": True, "messageId": message_id, "status": status, "process": route_process,
            "queueName": queue_name}


async def replay(conn: asyncpg.Connection, company_id: str, stored: StoredResponse) -> SendOutcome:
    """The stored answer for a key, with the message's status (and provider id) as they are now.

    The stored answer says what the message was then (``queued``); a client retrying later
    must not be told a message that has been read is still queued.
    """
    body: SendAnswer = {**stored.body}
    message = await store.load_message(conn, body["messageId"], company_id)
    if message is not None and message.status != body["status"]:
        body["status"] = message.status
        if message.external_id is not None:
            body["externalId"] = message.external_id
    return SendOutcome(stored.status, body, replayed=True)


class SendService:
    """Accepts messages: routes, stores and enqueues them (see the module docstring for the order)."""

    def __init__(self, db: Database, router: MessageRouter, producer: QueueProducer, *,
                 idempotency_ttl: timedelta = timedelta(hours=24)) -> None:
        self.db = db
        self.router = router
        self.producer = producer
        self.idempotency_ttl = idempotency_ttl
        self.accepted = 0
        self.enqueue_failures = 0

    async def send(self, request: SendRequest) -> SendOutcome:
        """Accept one message: the stored answer of a replay, 202 once stored, or 200 when final within ``wait``."""
        key = request.idempotency
        common = await self._store_common(request)
        if common is not None:
            (stored_common, route) = common
            record, held = stored_common.record, stored_common.held
        else:
            if key is not None:
                # Fast path for a replay (no routing): the key is only *claimed* inside the
                # transaction that stores the message (_store), so a process killed between
                # the claim and the insert leaves nothing behind and a retry simply runs again.
                async with self.db.connection() as conn:
                    stored = await idempotency.lookup(conn, key)
                    if stored is not None:
                        return await replay(conn, request.company_id, stored)
            stored_record, route, outcome, held = await self._store(request)
            if outcome is not None:  # a replay, or the message already existed under this key
                return outcome
            assert stored_record is not None
            record = stored_record
        # A message behind an unfinished one of its chat gets its job when that one ends.
        enqueued = False if held else await self.enqueue(route, record)
        if request.wait_seconds <= 0:
            return SendOutcome(202, accepted_body(record.message_id, route.process_name, route.queue_name),
                               enqueued=enqueued)
        try:
            final = await self._wait(record, route, min(request.wait_seconds, MAX_WAIT_SECONDS))
        except BaseException:
            if key is not None:  # the message is stored: a retry must get it, not a 409
                await self._complete(key, StoredResponse(202, accepted_body(
                    record.message_id, route.process_name, route.queue_name)))
            raise
        if key is not None:
            await self._complete(key, StoredResponse(final.status_code, final.body))
        return SendOutcome(final.status_code, final.body, enqueued=enqueued)

    async def _complete(self, key: IdempotencyKey, response: StoredResponse) -> None:
        try:
            async with self.db.transaction() as conn:
                await idempotency.complete(conn, key, response)
        except BisnesgptError as exc:
            log.warning("could not store the idempotent answer for %s: %s", key.key, exc.detail)

    async def _store_common(self, request: SendRequest) -> tuple[accept_fast.Stored, Route] | None:
        """The common path in one statement (``accept_fast``); None: the full path answers."""
        draft = request.draft
        if not accept_fast.eligible(draft):
            return None
        try:
            route = await self.router.route(request.company_id, request.phone_index)
            check_sendable(route.process_name, draft.type, request.phone_index)
            check_mentions(route.process_name, isinstance(draft.body, dict) and bool(draft.body.get("mentions")),
                           request.phone_index)
            check_pacing(route.process_name, bool(draft.pacing), request.phone_index)
        except BisnesgptError:
            if request.idempotency is None:
                raise
            return None  # a replay of the key answers before the routing does (the full path)
        job = accept_fast.FastAccept(
            company_id=request.company_id, phone_index=request.phone_index, route=route,
            ordered=route.ordered if request.ordered is None else request.ordered, source=request.source,
            key=request.idempotency, key_ttl=self.idempotency_ttl, complete_key=request.wait_seconds <= 0)
        try:
            async with self.db.connection() as conn:
                stored = await accept_fast.accept(conn, draft, job)
        except asyncpg.UniqueViolationError as exc:
            if request.idempotency is None or "idempotency" not in (exc.constraint_name or ""):
                raise
            return None  # stored by an earlier attempt under this key: the full path finds it
        if stored is None:
            return None
        metrics.MESSAGES_ACCEPTED.labels(route.queue_name).inc()
        self.accepted += 1
        return stored, route

    async def _store(self, request: SendRequest
                     ) -> tuple[store.MessageRecord | None, Route, SendOutcome | None, bool]:
        phone_index = request.phone_index
        draft = request.draft
        if draft.target is not None and not request.phone_index_explicit:
            async with self.db.connection() as conn:
                target = await find_message(conn, request.company_id, draft.target)
            if target is not None:
                phone_index = target.phone_index
        route = await self.router.route(request.company_id, phone_index)
        check_sendable(route.process_name, draft.type, phone_index)
        check_mentions(route.process_name, isinstance(draft.body, dict) and bool(draft.body.get("mentions")),
                       phone_index)
        check_pacing(route.process_name, bool(draft.pacing), phone_index)
        key = request.idempotency
        try:
            async with self.db.transaction() as conn:
                if key is not None:
                    # Claimed in the transaction that stores the message: both or neither.
                    # A concurrent request with the same key waits here on the row lock,
                    # then replays the committed answer.
                    stored = await idempotency.claim(conn, key, self.idempotency_ttl)
                    if stored is not None:
                        return None, route, await replay(conn, request.company_id, stored), False
                resolved = await resolve_draft(conn, request.company_id, phone_index, draft)
                draft = resolved.draft  # a forward's content is settled here
                if route.process_name == "meta":
                    # The Cloud API's 24-hour window: refuse now with a clear problem rather
                    # than let Meta fail the message later (the engine checks again).
                    await check_window(conn, request.company_id, phone_index, resolved.recipient.to, draft.type)
                media = draft.media
                ordered = route.ordered if request.ordered is None else request.ordered
                chat_id = resolved.recipient.chat_id
                chat_seq = (await chat_order.next_seq(conn, request.company_id, phone_index, chat_id)
                            if ordered else None)
                record = await store.insert_outbound(conn, store.NewOutboundMessage(
                    message_id=new_message_id(),
                    company_id=request.company_id,
                    phone_index=phone_index,
                    provider=route.process_name,
                    connection_type=route.connection_type,
                    chat_id=chat_id,
                    message_type=draft.type,
                    payload=resolved.payload(),
                    queue_name=route.queue_name,
                    process_name=route.process_name,
                    content=draft.content,
                    media_url=media.link,
                    media_id=media.id,
                    media_filename=media.filename,
                    media_mime_type=draft.mime_type,
                    raw={"request": draft.request} if draft.request else None,
                    context_message_id=resolved.context_message_id,
                    idempotency_key=key.key if key else None,
                    source=request.source,
                    chat_seq=chat_seq,
                ))
                assert record is not None  # a fresh UUIDv7 never collides
                held = chat_seq is not None and not await _is_chat_head(conn, record)
                if key is not None and request.wait_seconds <= 0:
                    body = accepted_body(record.message_id, route.process_name, route.queue_name)
                    await idempotency.complete(conn, key, StoredResponse(202, body))
        except asyncpg.UniqueViolationError as exc:
            if key is None or "idempotency" not in (exc.constraint_name or ""):
                raise
            # A previous attempt under this key (whose process died mid-request) stored it.
            return *await self._existing(request, key, route), False
        metrics.MESSAGES_ACCEPTED.labels(route.queue_name).inc()
        self.accepted += 1
        return record, route, None, held

    async def _existing(self, request: SendRequest, key: IdempotencyKey,
                        route: Route) -> tuple[store.MessageRecord | None, Route, SendOutcome]:
        async with self.db.transaction() as conn:
            stored = await idempotency.claim(conn, key, self.idempotency_ttl)
            if stored is not None:
                return None, route, await replay(conn, request.company_id, stored)
            row = await conn.fetchrow(SQL.select_message_by_idempotency_key, request.company_id, key.key)
            assert row is not None
            record = store.MessageRecord.from_row(row)
            body = accepted_body(record.message_id, record.process_name or route.process_name,
                                 record.queue_name or route.queue_name, status=record.status)
            await idempotency.complete(conn, key, StoredResponse(202, body))
        return record, route, SendOutcome(202, body, replayed=True)

    async def enqueue(self, route: Route, record: store.MessageRecord) -> bool:
        """Add the job; False (and the reconciler's turn) when Redis is unavailable."""
        try:
            await self.producer.add(route.spec, record.message_id, send_job_data(record))
            return True
        except QueueUnavailable as exc:
            self.enqueue_failures += 1
            ENQUEUE_DEFERRED.labels(route.queue_name).inc()
            log.warning("message %s stored but not enqueued (%s); the outbox reconciler will enqueue it",
                        record.message_id, exc.detail)
            return False

    async def _wait(self, record: store.MessageRecord, route: Route, seconds: float) -> SendOutcome:
        deadline = time.monotonic() + seconds
        status: MessageState = record.status
        external_id: str | None = None
        error: ErrorSummary | None = None
        while True:
            # The message is stored: its caller must get an answer, so this poll waits for a
            # connection as long as any (an explicit timeout is never refused as overload).
            async with self.db.connection(timeout=self.db.connect_timeout) as conn:
                row = await conn.fetchrow(SQL.select_send_status, record.id)
            if row is not None:
                status, external_id = row["status"], row["external_id"]
                error = ErrorSummary(code=row["error_code"], title=row["error_title"])
            if status in FINAL_FOR_WAIT or time.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL_SECONDS)
        body = accepted_body(record.message_id, route.process_name, route.queue_name, status=status)
        if status not in FINAL_FOR_WAIT:
            return SendOutcome(202, body)
        body["success"] = status not in ("failed", "cancelled")
        body["externalId"] = external_id
        body["error"] = error if status == "failed" else None
        return SendOutcome(200, body)


async def _is_chat_head(conn: asyncpg.Connection, record: store.MessageRecord) -> bool:
    """Whether nothing accepted before ``record`` for its chat is unfinished (its chat is locked)."""
    head = await chat_order.chat_head(conn, record.company_id, record.phone_index, record.chat_id)
    return head is None or head.id == record.id
