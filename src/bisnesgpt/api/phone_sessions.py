"""Configured phones with their connection status and WhatsApp-Web session, one record each.

One query (``phone_sessions`` in ``queries.sql``) joins a phone's configuration
(``phone_configs``), the status its engine writes (``phone_status``), the wwebjs session
state (``wwebjs_sessions``) and the process that owns the session now (its unexpired
``wwebjs:session:<company>:<phone>`` lease). The session API shows these records as
sessions, the dashboard as phone cards; both read them through ``load_phone_sessions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from pydantic import JsonValue

from bisnesgpt.api.schemas.common import JsonObject
from bisnesgpt.core.errors import Conflict, NotFound
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs.store import DesiredState
from bisnesgpt.phones.live_status import live_status
from bisnesgpt.phones.store import PhoneConfigStatus, PhoneStatus

SQL = load_queries("bisnesgpt.api")

# The QR code is shown only through the QR routes (as an image), never inside a listing.
HIDDEN_METADATA = frozenset({"qrCode"})
# Statuses a running wwebjs process drives; with no owner they are left over from a dead one.
LIVE_STATUSES = frozenset({"initializing", "qr", "pairing_code", "authenticated", "ready"})


@dataclass(frozen=True)
class PhoneSession:
    """One configured phone: configuration, engine status, session state and owner."""

    company_id: str
    company_name: str
    phone_index: int
    connection_type: str
    config_status: PhoneConfigStatus | None
    display_phone_number: str | None
    meta_phone_number_id: str | None
    meta_waba_id: str | None
    dialog360_channel_id: str | None
    status: PhoneStatus
    phone_number: str | None
    last_seen: datetime | None
    status_updated_at: datetime | None
    metadata: JsonObject
    desired_state: DesiredState
    breaker_tripped_at: datetime | None
    breaker_reason: str | None
    last_ready_at: datetime | None
    paired: bool
    owner: str | None
    # The status's reason and, while a Cloud API phone's sending is paused, until when (live_status).
    reason: str | None = None
    paused_until: datetime | None = None
    # The phone's last message in or out (None: none yet).
    last_activity: datetime | None = None
    # Messages to one chat leave in acceptance order (the phone's ``ordered_sends``).
    ordered_sends: bool = True
    # The phone's ``phone_configs.settings`` (its own rate limit, coexistence, …).
    settings: JsonObject = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PhoneSession:
        """The record of a ``phone_sessions`` row (no status yet: ``pending``; no session: ``running``)."""
        metadata = dict(row["metadata"] or {})
        live = live_status(row["status"], metadata)
        return cls(
            company_id=row["company_id"], company_name=row["company_name"], phone_index=row["phone_index"],
            connection_type=row["connection_type"], config_status=row["config_status"],
            display_phone_number=row["display_phone_number"], meta_phone_number_id=row["meta_phone_number_id"],
            meta_waba_id=row["meta_waba_id"], dialog360_channel_id=row["dialog360_channel_id"],
            status=live.status, phone_number=row["phone_number"], last_seen=row["last_seen"],
            status_updated_at=row["status_updated_at"], metadata=metadata,
            desired_state=row["desired_state"] or "running", breaker_tripped_at=row["breaker_tripped_at"],
            breaker_reason=row["breaker_reason"], last_ready_at=row["last_ready_at"], paired=bool(row["paired"]),
            owner=row["owner"], reason=live.reason, paused_until=live.paused_until,
            last_activity=row["last_activity"], ordered_sends=bool(row.get("ordered_sends", True)),
            settings=dict(row.get("settings") or {}),
        )

    @property
    def is_wwebjs(self) -> bool:
        """Whether this phone runs on WhatsApp Web (the only kind with a session to act on)."""
        return self.connection_type == "wwebjs"

    @property
    def number(self) -> str | None:
        """The number the phone reported, else the one configured for display."""
        return self.phone_number or self.display_phone_number

    @property
    def qr_available(self) -> bool:
        """Whether a QR code waits to be scanned now."""
        return self.status == "qr" and bool(self.metadata.get("qrCode"))

    @property
    def qr_code(self) -> str | None:
        """The QR code (a PNG data URL) while the session shows one, else None."""
        qr = self.metadata.get("qrCode")
        return qr if self.status == "qr" and isinstance(qr, str) and qr else None

    @property
    def pairing_code(self) -> JsonValue:
        """The code to type on the phone while linking by number, else None."""
        return self.metadata.get("pairingCode") if self.status == "pairing_code" else None

    @property
    def stale(self) -> bool:
        """A status nobody drives any more (its process died and no one took over yet)."""
        return self.owner is None and self.status in LIVE_STATUSES

    def shown_metadata(self) -> JsonObject:
        """The status metadata without what only the QR routes show."""
        return {k: v for k, v in self.metadata.items() if k not in HIDDEN_METADATA}


async def load_phone_sessions(conn: asyncpg.Connection, company_id: str | None,
                              phone_index: int | None = None) -> list[PhoneSession]:
    """The phones of ``company_id`` (None: every company), or only ``phone_index``, in order."""
    return [PhoneSession.from_row(r) for r in await conn.fetch(SQL.phone_sessions, company_id, phone_index)]


async def load_phone_session(conn: asyncpg.Connection, company_id: str, phone_index: int) -> PhoneSession:
    """One phone (404 when the company has no such phone configured)."""
    phones = await load_phone_sessions(conn, company_id, phone_index)
    if not phones:
        raise NotFound(f"phone {phone_index} of company {company_id} is not configured")
    return phones[0]


async def company_exists(conn: asyncpg.Connection, company_id: str) -> bool:
    """Whether the company is known (an empty phone list means something else when it is not)."""
    return await conn.fetchval(SQL.company_exists, company_id) is not None


async def load_wwebjs_phone(conn: asyncpg.Connection, company_id: str, phone_index: int, *, only: str) -> PhoneSession:
    """One WhatsApp-Web phone: 404 for an unknown company or phone, 409 (saying ``only``) for another engine's."""
    if not await company_exists(conn, company_id):
        raise NotFound("company not found")
    phone = await load_phone_session(conn, company_id, phone_index)
    if not phone.is_wwebjs:
        raise Conflict(f"phone {phone_index} uses connection type {phone.connection_type!r}; {only}")
    return phone
