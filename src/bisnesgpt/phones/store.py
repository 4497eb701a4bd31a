"""``phone_configs`` and ``phone_status`` rows, with secrets decrypted only on demand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypedDict, get_args

import asyncpg

from bisnesgpt.core.crypto import SecretBox, SecretColumn
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import Row, RowRecord

SQL = load_queries("bisnesgpt.phones")

PhoneConfigStatus = Literal["pending", "ready", "active", "disconnected", "error", "disabled"]
"""The configuration's own status (``phone_configs.status``), set by operators and on onboarding."""
PhoneStatus = Literal["initializing", "qr", "pairing_code", "authenticated", "ready", "error", "disconnected",
                      "pending", "paused"]
"""The live connection status an engine reports (``phone_status.status``)."""
PHONE_CONFIG_STATUSES: tuple[PhoneConfigStatus, ...] = get_args(PhoneConfigStatus)

# The encrypted credential columns; a value is bound to its phone (company id, phone index).
META_ACCESS_TOKEN = SecretColumn("phone_configs", "meta_access_token_encrypted")
D360_API_KEY = SecretColumn("phone_configs", "api_key_encrypted")

# Columns `upsert_phone` may set besides connection_type and status.
# ``ordered_sends`` is given as "true" / "false".
PHONE_FIELDS = ("display_phone_number", "meta_phone_number_id", "meta_waba_id", "meta_access_token_encrypted",
                "dialog360_client_id", "dialog360_channel_id", "api_key_encrypted", "ordered_sends")


@dataclass(frozen=True)
class PhoneConfig(RowRecord):
    """A configured phone: how it connects, its provider ids, encrypted credentials and knobs."""

    id: int
    company_id: str
    phone_index: int
    connection_type: str | None
    dialog360_client_id: str | None
    dialog360_channel_id: str | None
    api_key_encrypted: str | None
    display_phone_number: str | None
    status: PhoneConfigStatus | None
    meta_phone_number_id: str | None
    meta_waba_id: str | None
    meta_access_token_encrypted: str | None
    process_name: str | None
    settings: JsonObject
    created_at: datetime
    updated_at: datetime
    # Messages to one chat leave in acceptance order unless a message says ``"ordered": false``.
    ordered_sends: bool = True

    def meta_access_token(self, box: SecretBox) -> str | None:
        """The Cloud API access token in clear (None when none is stored)."""
        if not self.meta_access_token_encrypted:
            return None
        return box.decrypt(self.meta_access_token_encrypted, META_ACCESS_TOKEN.at(self.company_id, self.phone_index))

    def dialog360_api_key(self, box: SecretBox) -> str | None:
        """The 360dialog API key in clear (None when none is stored)."""
        if not self.api_key_encrypted:
            return None
        return box.decrypt(self.api_key_encrypted, D360_API_KEY.at(self.company_id, self.phone_index))


class PhoneStatusRow(TypedDict):
    """A ``phone_status`` row: what the engine last reported about the connection."""

    company_id: str
    phone_index: int
    status: PhoneStatus
    phone_number: str | None
    last_seen: datetime | None
    metadata: JsonObject
    connection_type: str | None
    process_name: str | None


class CompanyPhoneStatus(TypedDict):
    """One phone of a company: its configuration (if any) joined with its live status (if any)."""

    phone_index: int
    connection_type: str | None
    process_name: str | None
    config_status: PhoneConfigStatus | None
    display_phone_number: str | None
    configured: bool
    status: PhoneStatus | None
    phone_number: str | None
    last_seen: datetime | None
    metadata: JsonObject


def _status_row(row: Row) -> PhoneStatusRow:
    return PhoneStatusRow(company_id=row["company_id"], phone_index=row["phone_index"], status=row["status"],
                          phone_number=row["phone_number"], last_seen=row["last_seen"], metadata=row["metadata"],
                          connection_type=row["connection_type"], process_name=row["process_name"])


def _company_status(row: Row) -> CompanyPhoneStatus:
    return CompanyPhoneStatus(
        phone_index=row["phone_index"], connection_type=row["connection_type"], process_name=row["process_name"],
        config_status=row["config_status"], display_phone_number=row["display_phone_number"],
        configured=row["configured"], status=row["status"], phone_number=row["phone_number"],
        last_seen=row["last_seen"], metadata=row["metadata"])


async def get_phone(conn: asyncpg.Connection, company_id: str, phone_index: int) -> PhoneConfig | None:
    """One phone's configuration (None when it is not configured)."""
    return await PhoneConfig.fetch_one(conn, SQL.get_phone, company_id, phone_index)


async def company_phones(conn: asyncpg.Connection, company_id: str) -> list[PhoneConfig]:
    """A company's configured phones, by phone index."""
    return [PhoneConfig.from_row(r) for r in await conn.fetch(SQL.company_phones, company_id)]


async def phone_by_meta_phone_number_id(conn: asyncpg.Connection, phone_number_id: str) -> PhoneConfig | None:
    """The phone a Cloud API ``phone_number_id`` names (how Meta's webhooks name it)."""
    return await PhoneConfig.fetch_one(conn, SQL.phone_by_meta_phone_number_id, phone_number_id)


async def phone_by_d360_channel(conn: asyncpg.Connection, channel_id: str) -> PhoneConfig | None:
    """The phone of a 360dialog channel id."""
    return await PhoneConfig.fetch_one(conn, SQL.phone_by_d360_channel, channel_id)


async def set_phone_status(
    conn: asyncpg.Connection,
    company_id: str,
    phone_index: int,
    status: str,
    *,
    metadata: Mapping[str, object] | None = None,
    phone_number: str | None = None,
    connection_type: str | None = None,
    process_name: str | None = None,
) -> PhoneStatusRow:
    """Record the live status (metadata replaced; a None number, type or process keeps the stored one)."""
    row = await conn.fetchrow(SQL.upsert_phone_status, company_id, phone_index, status, phone_number, metadata or {},
                              connection_type, process_name)
    assert row is not None
    return _status_row(row)


async def get_phone_status(conn: asyncpg.Connection, company_id: str, phone_index: int) -> PhoneStatusRow | None:
    """The live status last recorded for a phone (None: never reported)."""
    row = await conn.fetchrow(SQL.get_phone_status, company_id, phone_index)
    return _status_row(row) if row else None


# --- writes (phone configuration API and CLI) -----------------------------------------------


async def set_phone_setting(conn: asyncpg.Connection, company_id: str, phone_index: int, name: str,
                            value: JsonValue) -> PhoneConfig | None:
    """Set one key of the phone's ``settings`` (None removes it); the phone, None when not configured."""
    return await PhoneConfig.fetch_one(conn, SQL.set_phone_setting, company_id, phone_index, name, value)


async def upsert_phone(conn: asyncpg.Connection, company_id: str, phone_index: int, *, connection_type: str,
                       status: str, fields: dict[str, str | None]) -> PhoneConfig:
    """Create or update a phone; columns not named in ``fields`` keep their values.

    Secrets in ``fields`` must already be encrypted (``*_encrypted`` columns).
    """
    unknown = set(fields) - set(PHONE_FIELDS)
    if unknown:
        raise ValueError(f"not phone_configs fields: {sorted(unknown)}")
    row = await conn.fetchrow(SQL.upsert_phone, company_id, phone_index, connection_type, fields, status)
    assert row is not None
    return PhoneConfig.from_row(row)


async def delete_phone(conn: asyncpg.Connection, company_id: str, phone_index: int) -> bool:
    """Remove a phone's configuration and status row; False if there was none."""
    deleted = await conn.fetchval(SQL.delete_phone, company_id, phone_index)
    await conn.execute(SQL.delete_phone_status, company_id, phone_index)
    return deleted is not None


async def all_phones(conn: asyncpg.Connection, connection_types: list[str] | None = None) -> list[PhoneConfig]:
    """Every company's phones (or those of ``connection_types``), by company and phone index."""
    return [PhoneConfig.from_row(r) for r in await conn.fetch(SQL.all_phones, connection_types)]


async def company_phone_statuses(conn: asyncpg.Connection, company_id: str) -> list[CompanyPhoneStatus]:
    """Each phone of a company (configured or with a status row) with its live status."""
    return [_company_status(r) for r in await conn.fetch(SQL.company_phone_statuses, company_id)]


async def company_exists(conn: asyncpg.Connection, company_id: str) -> bool:
    """Whether the company exists."""
    return bool(await conn.fetchval(SQL.company_exists, company_id))
