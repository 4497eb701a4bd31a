"""Message states and forward-only transitions, each recorded in ``message_status_history``.

The rule itself lives in SQL (``message_status_allows`` in migration 0001) so that every
writer — API, workers, webhook processing, operators with psql — is held to it; ``allowed``
mirrors it for validation in Python (a test checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from bisnesgpt.core.ids import new_event_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging.events import MESSAGE_STATUS

SQL = load_queries("bisnesgpt.messaging")

MessageState = Literal["accepted", "queued", "sending", "sent", "delivered", "read", "failed", "cancelled"]

LADDER: tuple[MessageState, ...] = ("accepted", "queued", "sending", "sent", "delivered", "read")
TERMINAL: frozenset[MessageState] = frozenset({"read", "failed", "cancelled"})
# States after which a send must never be attempted again.
PAST_SENDING: frozenset[MessageState] = frozenset({"sent", "delivered", "read", "failed", "cancelled"})


def allowed(from_status: MessageState, to_status: MessageState) -> bool:
    """Python mirror of SQL ``message_status_allows``."""
    if from_status in TERMINAL:
        return False
    if to_status == "cancelled":
        return from_status in ("accepted", "queued")
    if to_status == "failed":
        return from_status in ("accepted", "queued", "sending", "sent")
    if from_status in LADDER and to_status in LADDER:
        return LADDER.index(to_status) > LADDER.index(from_status)
    return False


# Statuses tenants hear about through `message.status` events.
PUBLISHED_STATUSES: frozenset[MessageState] = frozenset({"queued", "sent", "delivered", "read", "failed", "cancelled"})


@dataclass(frozen=True)
class ProviderStatus:
    """What a provider said with a status: its time for it, and Meta's billing blocks."""

    at: datetime | None = None
    pricing: JsonObject | None = None
    conversation: JsonObject | None = None


@dataclass(frozen=True)
class Transition:
    """What ``advance_status`` did: whether the message moved, from what, and to what."""

    changed: bool
    from_status: MessageState | None
    to_status: MessageState
    current_status: MessageState | None  # the status before this call (None: no such message)
    recorded: bool = False  # a provider status kept in the history although it did not move the state


async def advance_status(
    conn: asyncpg.Connection,
    message_pk: int,
    to_status: MessageState,
    *,
    source: str,
    detail: JsonObject | None = None,
    external_id: str | None = None,
    error_code: str | None = None,
    error_title: str | None = None,
    error_details: JsonValue = None,
    raw: JsonObject | None = None,
    provider_status: ProviderStatus | None = None,
) -> Transition:
    """Move a message forward (or do nothing if the rule forbids it), with history and event.

    With ``provider_status`` (a status the provider sent) the status is kept even when it
    may not move the message: a history row (``applied`` false), its own timestamp column
    (the provider's time when given) and Meta's pricing/conversation blocks.

    Call inside a transaction: the history row and the tenant ``message.status`` event (the
    ``events.MessageStatusData`` shape, with its webhook deliveries) are written by the same
    statement as the status change, and commit with it or not at all.
    """
    given = provider_status or ProviderStatus()
    # The tenant event is written by the same statement (one round trip for the whole change).
    row = await conn.fetchrow(
        SQL.advance_status, message_pk, to_status, source, external_id, error_code, error_title,
        error_details, detail or {}, given.at, given.pricing, given.conversation, provider_status is not None,
        MESSAGE_STATUS if to_status in PUBLISHED_STATUSES else None, new_event_id(), raw,
    )
    if row is None or row["id"] is None:
        current = row["current_status"] if row is not None else None
        return Transition(False, current, to_status, current)
    if not row["applied"]:
        return Transition(False, row["from_status"], to_status, row["from_status"], recorded=True)
    return Transition(True, row["from_status"], to_status, row["from_status"])
