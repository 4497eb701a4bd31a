"""Usage over a period: Meta's billing data and message counts, per company and phone.

Billing comes from the ``pricing`` and ``conversation`` blocks Meta sends with its status
webhooks (kept on each message): per phone, category (``service``, ``marketing``,
``utility``, ``authentication``) and pricing model, the messages sent in the period, how
many Meta marked billable, and the distinct conversations they belong to. Counts per status
cover both engines (and inbound messages), by when the message was created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord
from bisnesgpt.messaging.store import Direction

SQL = load_queries("bisnesgpt.messaging")


@dataclass(frozen=True, kw_only=True)
class BillingRow(RowRecord):
    """Billing of one phone's messages in one category and pricing model."""

    company_id: str
    phone_index: int
    category: str
    pricing_model: str
    messages: int
    billable_messages: int
    conversations: int


@dataclass(frozen=True, kw_only=True)
class StatusCount(RowRecord):
    """How many of one phone's messages (one engine, one direction) are in one status."""

    company_id: str
    phone_index: int
    provider: str
    direction: Direction
    status: str
    messages: int


@dataclass(frozen=True)
class UsageReport:
    """A period's billing rows and status counts (``company_id`` None: every company)."""

    company_id: str | None
    start: datetime
    end: datetime
    billing: list[BillingRow]
    statuses: list[StatusCount]


async def usage(conn: asyncpg.Connection, company_id: str | None, start: datetime, end: datetime) -> UsageReport:
    """The usage of ``company_id`` (every company when None) in [``start``, ``end``)."""
    billing = [BillingRow.from_row(r) for r in await conn.fetch(SQL.usage_billing, company_id, start, end)]
    statuses = [StatusCount.from_row(r) for r in await conn.fetch(SQL.usage_statuses, company_id, start, end)]
    return UsageReport(company_id, start, end, billing, statuses)
