"""Cloud API phones as the meta engine sees them: cached configs, lookups, status changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from bisnesgpt.core.jsontypes import JsonValue
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging.events import PHONE_STATUS, record_tenant_event
from bisnesgpt.phones.store import (
    PhoneConfig,
    get_phone,
    get_phone_status,
    phone_by_d360_channel,
    phone_by_meta_phone_number_id,
    set_phone_status,
)

SQL = load_queries("bisnesgpt.engines.meta")


class PhoneCache:
    """``phone_configs`` rows by (company, phone index), cached briefly.

    A send needs the phone's credentials and rates for every message; a few seconds of
    staleness after an operator edits a phone is harmless, a query per message is not.
    """

    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._entries: dict[tuple[str, int], tuple[float, PhoneConfig | None]] = {}
        self._lock = asyncio.Lock()

    async def get(self, company_id: str, phone_index: int) -> PhoneConfig | None:
        """The phone's row (None: not configured), read again once the cached one is ``ttl`` old."""
        key = (company_id, phone_index)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.ttl:
            return entry[1]
        async with self.db.connection() as conn:
            phone = await get_phone(conn, company_id, phone_index)
        self._entries[key] = (now, phone)
        return phone

    def forget(self, company_id: str, phone_index: int) -> None:
        """Drop the cached row, so that the next send reads the phone's new status and credentials."""
        self._entries.pop((company_id, phone_index), None)


async def phones_by_waba_id(conn: asyncpg.Connection, waba_id: str) -> list[PhoneConfig]:
    """The phones of a WhatsApp Business Account (account-level webhooks name only the WABA)."""
    return [PhoneConfig.from_row(r) for r in await conn.fetch(SQL.phones_of_waba, waba_id)]


Routing = Literal["routed", "unmatched", "ambiguous"]
"""Whether a webhook named exactly one phone (routed), none, or more than one (it is kept aside)."""


@dataclass(frozen=True)
class WebhookRoute:
    """Which phone a webhook change is about: exactly one, or the reason there is none."""

    routing: Routing
    phone: PhoneConfig | None = None
    candidates: tuple[PhoneConfig, ...] = ()
    reason: str = ""

    def candidates_json(self) -> list[JsonValue]:
        """The candidate phones as kept with a change kept aside."""
        return [{"companyId": p.company_id, "phoneIndex": p.phone_index} for p in self.candidates]


def route_of(found: list[PhoneConfig], *, none: str, several: str) -> WebhookRoute:
    """One phone routes; none or several is kept aside (never the first of several)."""
    unique = list({p.id: p for p in found}.values())
    if len(unique) == 1:
        return WebhookRoute("routed", unique[0])
    if not unique:
        return WebhookRoute("unmatched", reason=none)
    return WebhookRoute("ambiguous", candidates=tuple(unique), reason=several)


async def phone_for_webhook(conn: asyncpg.Connection, provider: str, *, channel: str | None,
                            phone_number_id: str, display_phone_number: str) -> WebhookRoute:
    """The one phone a webhook change is about, by 360dialog channel and phone_number_id, or why none.

    Both identities are unique, so each names at most one phone; when they name different
    phones — or the channel's phone is proven to be another number than the webhook's — the
    webhook is ambiguous. 360dialog phones may lack ``meta_phone_number_id``; their webhooks
    still carry the display number, so for them the number (digits only) is the last resort,
    and it too must name exactly one phone.
    """
    by_channel = await phone_by_d360_channel(conn, channel) if channel else None
    by_id = await phone_by_meta_phone_number_id(conn, phone_number_id) if phone_number_id else None
    if by_channel is not None and by_id is None and phone_number_id and by_channel.meta_phone_number_id \
            and by_channel.meta_phone_number_id != phone_number_id:
        return WebhookRoute("ambiguous", candidates=(by_channel,),
                            reason="the channel's phone is another number than the webhook's phone_number_id")
    found = [p for p in (by_channel, by_id) if p is not None]
    if found:
        return route_of(found, none="", several="the channel and the phone_number_id name different phones")
    if provider == "360dialog":
        digits = "".join(ch for ch in display_phone_number if ch.isdigit())
        if digits:
            rows = await conn.fetch(SQL.d360_phones_by_display_number, digits)
            return route_of([PhoneConfig.from_row(r) for r in rows], none="no phone has this number",
                            several="several 360dialog phones have this display number")
    return WebhookRoute("unmatched", reason="no phone has this channel or phone_number_id")


async def waba_route(conn: asyncpg.Connection, waba_id: str) -> WebhookRoute:
    """The phone an account-level change (naming only the WABA) is kept under: the WABA's phones
    must all be one company's (its first phone then); phones of several companies are no answer."""
    owners = await phones_by_waba_id(conn, waba_id)
    companies = {p.company_id for p in owners}
    if len(companies) == 1:
        return WebhookRoute("routed", owners[0])
    if not owners:
        return WebhookRoute("unmatched", reason="no phone of this WABA")
    return WebhookRoute("ambiguous", candidates=tuple(owners), reason="the WABA's phones belong to several companies")


async def change_phone_status(conn: asyncpg.Connection, phone: PhoneConfig, status: str, *, reason: str,
                              code: str | None = None, extra: Mapping[str, object] | None = None) -> bool:
    """Set ``phone_status`` and publish ``phone.status`` (only when something changed)."""
    current = await get_phone_status(conn, phone.company_id, phone.phone_index)
    metadata = {"error": reason, "reason": reason, "code": code, **(extra or {})}
    if current is not None and current["status"] == status and (current["metadata"] or {}).get("reason") == reason:
        return False
    await set_phone_status(conn, phone.company_id, phone.phone_index, status, metadata=metadata,
                           connection_type=phone.connection_type, process_name="meta")
    await record_tenant_event(
        conn, company_id=phone.company_id, phone_index=phone.phone_index, type=PHONE_STATUS,
        data={"status": status, "previous_status": current["status"] if current else None, "reason": reason,
              "code": code, "connection_type": phone.connection_type, **(extra or {})},
    )
    return True


@dataclass(frozen=True)
class UnroutedChange:
    """A webhook change kept aside because it named no phone, or more than one."""

    id: int
    provider: str
    waba_id: str | None
    phone_number_id: str | None
    field: str
    routing: Routing
    candidates: JsonValue
    value: JsonValue
    received_at: datetime


def unrouted_next_step(change: UnroutedChange) -> str:
    """What the operator does about a change kept aside (the CLI and the dashboard say the same)."""
    names = ", ".join(f"{c['companyId']}/{c['phoneIndex']}" for c in change.candidates
                      if isinstance(c, dict)) if isinstance(change.candidates, list) else ""
    if change.routing == "ambiguous":
        return (f"several phones match ({names or 'see candidates'}): keep this phone_number_id / channel on "
                "one phone only (correct or remove the others); later webhooks then route to it")
    named = change.phone_number_id or change.waba_id or "this number"
    return (f"no configured phone has {named}: add the phone (or correct its phone_number_id / 360dialog "
            "channel) in the company it belongs to; later webhooks then route to it")


async def unrouted_changes(conn: asyncpg.Connection, limit: int) -> list[UnroutedChange]:
    """The newest ``limit`` webhook changes kept aside (for the operator)."""
    return [UnroutedChange(**dict(r)) for r in await conn.fetch(SQL.unrouted_webhook_changes, limit)]
