"""The 24-hour customer-service window (``conversation_sessions``).

Free-form messages may only go to a contact who wrote to the phone in the last 24 hours;
outside the window only templates are allowed (Meta would fail the message with 131047).
Checking before calling Meta turns a delayed, billed failure into an immediate, clear one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.engines.meta")
WINDOW = timedelta(hours=24)
# Message types that never need an open window.
ALWAYS_ALLOWED_TYPES = frozenset({"template"})
# Windows remembered past this many are forgotten wholesale (a bound on memory, not a policy).
MAX_REMEMBERED = 100_000


class TemplateRequired(BisnesgptError):
    """A free-form message to a contact outside the 24-hour window: only a template may go."""


async def last_inbound_at(conn: asyncpg.Connection, company_id: str, phone_index: int,
                          contact: str) -> datetime | None:
    """When ``contact`` last wrote to the phone (None: never, so no window was ever open)."""
    value = await conn.fetchval(SQL.last_inbound_at, company_id, phone_index, contact)
    return value if isinstance(value, datetime) else None


async def check_window(conn: asyncpg.Connection, company_id: str, phone_index: int, contact: str,
                       message_type: str, *, now: datetime | None = None) -> None:
    """Raise ``TemplateRequired`` unless ``message_type`` may be sent to ``contact`` now."""
    if message_type in ALWAYS_ALLOWED_TYPES:
        return
    last = await last_inbound_at(conn, company_id, phone_index, contact)
    require_open(contact, last, now or datetime.now(UTC))


def require_open(contact: str, last: datetime | None, now: datetime) -> None:
    """Raise ``TemplateRequired`` unless ``contact``, who last wrote at ``last``, is inside the window."""
    if last is None or now - last > WINDOW:
        raise template_required(contact, last)


def template_required(contact: str, last: datetime | None) -> TemplateRequired:
    """The problem for a free-form message to ``contact`` outside the window (``last``: their last message)."""
    if last is None:
        return TemplateRequired(
            f"{contact} has never written to this number: only a template can start the conversation "
            "(POST /api/v2/messages/template/…); free-form messages may follow once the contact writes",
            extra={"code": "TEMPLATE_REQUIRED", "contact": contact},
        )
    return TemplateRequired(
        f"{contact} last wrote at {last.isoformat()}, more than 24 hours ago: only a template may be sent "
        "(POST /api/v2/messages/template/…) until the contact writes again",
        extra={"code": "TEMPLATE_REQUIRED", "contact": contact, "lastInboundAt": last.isoformat()},
    )


class OpenWindows:
    """The engine's window check with the open windows it saw remembered (one read per contact, not per message).

    Only an *open* window is remembered, with the contact's last inbound time: that time only
    ever moves forward (``touch_inbound_session`` never moves it back), so an inbound message
    can only lengthen a window seen open and never makes a remembered answer wrong — the
    inbound path needs no invalidation. A closed or never-opened window is read again every
    time (an inbound message may open it at any moment). ``ttl`` bounds how long a row that
    was deleted (a company removed) still counts.
    """

    def __init__(self, db: Database, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl = ttl
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, datetime]] = {}
        self.reads = 0

    async def check(self, company_id: str, phone_index: int, contact: str, message_type: str) -> None:
        """Raise ``TemplateRequired`` unless ``message_type`` may be sent to ``contact`` now."""
        if message_type in ALWAYS_ALLOWED_TYPES:
            return
        key = (company_id, phone_index, contact)
        now = datetime.now(UTC)
        seen = self._seen.get(key)
        if seen is not None and seen[0] > self._clock() and now - seen[1] <= WINDOW:
            return
        self.reads += 1
        async with self.db.connection() as conn:
            last = await last_inbound_at(conn, company_id, phone_index, contact)
        require_open(contact, last, now)
        assert last is not None
        if self.ttl > 0:
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[key] = (self._clock() + self.ttl, last)
