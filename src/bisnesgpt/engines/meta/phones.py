"""Cloud API phones as the meta engine sees them: cached configs, lookups, status changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import asyncpg

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


async def phone_for_webhook(conn: asyncpg.Connection, provider: str, *, channel: str | None,
                            phone_number_id: str, display_phone_number: str) -> PhoneConfig | None:
    """The phone a webhook change is about: by 360dialog channel, phone_number_id, or number.

    360dialog phones may lack ``meta_phone_number_id``; their webhooks still carry the
    display number, so for them the number (digits only) is the last resort.
    """
    lookups = ((channel, phone_by_d360_channel), (phone_number_id, phone_by_meta_phone_number_id))
    for value, lookup in lookups:
        if value:
            phone = await lookup(conn, value)
            if phone is not None:
                return phone
    if provider == "360dialog":
        digits = "".join(ch for ch in display_phone_number if ch.isdigit())
        if digits:
            return await PhoneConfig.fetch_one(conn, SQL.d360_phone_by_display_number, digits)
    return None


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
