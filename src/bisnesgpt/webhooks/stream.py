"""The live event feed behind ``GET /api/v1/events/ws``: tenant events, as webhooks carry them, to subscribers.

One poll per api process reads every company's new ``tenant_events`` rows (the outbox the
webhooks fan out from) and hands each to the subscribers whose filter wants it: their
company (an operator's subscription: every company), event types and phone. A row commits
after its ``created_at`` (the transaction's clock), so each poll looks back
``OVERLAP_SECONDS`` and skips ids already passed on; within that window no event is missed.
A subscriber that resumes from an event id first replays the events since it from the
table (the retention window), then continues live without a gap: it subscribes before
replaying and drops what the replay already sent. A subscriber too slow to take its
events is ended (its queue is bounded) and resumes from the last id it got.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from bisnesgpt.core.periodic import Periodic
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.webhooks.payload import EventDocument, event_document

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.webhooks")

OVERLAP_SECONDS = 5.0
BATCH = 1000
REPLAY_BATCH = 500
QUEUE_LIMIT = 5000


@dataclass(frozen=True)
class StreamFilter:
    """What a subscriber wants: one company (None: every company, operators only), types, a phone."""

    company_id: str | None
    types: frozenset[str] = frozenset()
    phone_index: int | None = None

    def wants(self, document: EventDocument) -> bool:
        """Whether the event passes the filter."""
        return ((self.company_id is None or document["company_id"] == self.company_id)
                and (not self.types or document["type"] in self.types)
                and (self.phone_index is None or document["phone_index"] == self.phone_index))


@dataclass(frozen=True)
class StreamedEvent:
    """An event for the stream: its document and its JSON text (encoded once for every client)."""

    document: EventDocument
    text: str


def streamed(document: EventDocument) -> StreamedEvent:
    """The event with its JSON text."""
    return StreamedEvent(document, json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str))


@dataclass(eq=False)
class Subscriber:
    """One open stream: its filter and its bounded queue (None in the queue: the stream ends)."""

    filter: StreamFilter
    queue: asyncio.Queue[StreamedEvent | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False

    def offer(self, event: StreamedEvent) -> None:
        """Queue the event if wanted; a full queue ends the subscription (it resumes by id)."""
        if self.overflowed or not self.filter.wants(event.document):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.end()

    def end(self) -> None:
        """Make the stream's reader stop (what is still queued is dropped: the client resumes by id)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


def _document(row: asyncpg.Record) -> EventDocument:
    data = row["data"]
    return event_document(event_id=row["id"], event_type=row["type"], created_at=row["created_at"],
                          company_id=row["company_id"], phone_index=row["phone_index"],
                          data=data if isinstance(data, dict) else {}, raw=None, include_raw=False)


class EventFeed:
    """The process's one poll of ``tenant_events`` and its subscribers."""

    def __init__(self, db: Database, poll_seconds: float) -> None:
        self.db = db
        self.subscribers: set[Subscriber] = set()
        self.delivered = 0
        self._high_water: datetime | None = None
        self._recent: dict[str, datetime] = {}
        self._loop = Periodic("event-feed", poll_seconds, self.poll_once)

    def start(self) -> None:
        """Begin polling."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop polling and end every subscription."""
        await self._loop.stop()
        for subscriber in list(self.subscribers):
            subscriber.end()
        self.subscribers.clear()

    @property
    def running(self) -> bool:
        """Whether the poll loop runs."""
        return self._loop.running

    def subscribe(self, stream_filter: StreamFilter) -> Subscriber:
        """A new subscription (live from the next poll on)."""
        subscriber = Subscriber(stream_filter)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscription."""
        self.subscribers.discard(subscriber)

    async def poll_once(self) -> bool:
        """Read new events and hand them out; True when a full batch came (poll again at once)."""
        if self._high_water is None:
            self._high_water = await self.db.fetchval(SQL.stream_now)
        since = self._high_water - timedelta(seconds=OVERLAP_SECONDS)
        rows = await self.db.fetch(SQL.stream_events_since, since, BATCH)
        fresh = 0
        for row in rows:
            if row["id"] in self._recent:
                continue
            self._recent[row["id"]] = row["created_at"]
            fresh += 1
            event = streamed(_document(row))
            for subscriber in list(self.subscribers):
                subscriber.offer(event)
            self.delivered += 1
            self._high_water = max(self._high_water, row["created_at"])
        horizon = self._high_water - timedelta(seconds=2 * OVERLAP_SECONDS)
        if len(self._recent) > BATCH:
            self._recent = {k: v for k, v in self._recent.items() if v >= horizon}
        return fresh >= BATCH

    async def replay(self, stream_filter: StreamFilter, after_event_id: str) -> list[EventDocument] | None:
        """The events after ``after_event_id`` (in (created_at, id) order) the filter wants.

        None when there is no such event for this caller (another company's, or gone).
        """
        position = await self.db.fetchrow(SQL.stream_event_position, after_event_id)
        if position is None or (stream_filter.company_id is not None
                                and position["company_id"] != stream_filter.company_id):
            return None
        out: list[EventDocument] = []
        last: tuple[datetime, str] = (position["created_at"], after_event_id)
        while True:
            if stream_filter.company_id is not None:
                rows = await self.db.fetch(SQL.stream_company_events_since, stream_filter.company_id, last[0],
                                           REPLAY_BATCH)
            else:
                rows = await self.db.fetch(SQL.stream_all_events_since, last[0], REPLAY_BATCH)
            later = [row for row in rows if (row["created_at"], row["id"]) > last]
            out.extend(d for d in map(_document, later) if stream_filter.wants(d))
            if len(rows) < REPLAY_BATCH or not later:
                return out
            last = (later[-1]["created_at"], later[-1]["id"])
