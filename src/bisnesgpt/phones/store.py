"""``phone_configs`` and ``phone_status`` rows, with secrets decrypted only on demand."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from bisnesgpt.core.crypto import SecretBox

PHONE_COLUMNS = """
    id, company_id, phone_index, connection_type, dialog360_client_id, dialog360_channel_id,
    api_key_encrypted, display_phone_number, status, meta_phone_number_id, meta_waba_id,
    meta_access_token_encrypted, process_name, settings, created_at, updated_at
"""
SELECT_PHONE = f"SELECT {PHONE_COLUMNS} FROM phone_configs WHERE company_id = $1 AND phone_index = $2"
SELECT_COMPANY_PHONES = f"SELECT {PHONE_COLUMNS} FROM phone_configs WHERE company_id = $1 ORDER BY phone_index"
SELECT_BY_META_PHONE_NUMBER_ID = f"SELECT {PHONE_COLUMNS} FROM phone_configs WHERE meta_phone_number_id = $1"
SELECT_BY_D360_CHANNEL = f"SELECT {PHONE_COLUMNS} FROM phone_configs WHERE dialog360_channel_id = $1"
SELECT_BY_PROCESS = (
    f"SELECT {PHONE_COLUMNS} FROM phone_configs WHERE process_name = $1 ORDER BY company_id, phone_index"
)

UPSERT_PHONE_STATUS = """
INSERT INTO phone_status (company_id, phone_index, status, phone_number, last_seen, metadata,
                          connection_type, process_name)
VALUES ($1, $2, $3, $4, now(), $5::jsonb, $6, $7)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    status = EXCLUDED.status,
    phone_number = coalesce(EXCLUDED.phone_number, phone_status.phone_number),
    last_seen = now(),
    metadata = EXCLUDED.metadata,
    connection_type = coalesce(EXCLUDED.connection_type, phone_status.connection_type),
    process_name = coalesce(EXCLUDED.process_name, phone_status.process_name)
RETURNING company_id, phone_index, status, phone_number, last_seen, metadata, connection_type, process_name
"""
SELECT_PHONE_STATUS = """
SELECT company_id, phone_index, status, phone_number, last_seen, metadata, connection_type, process_name
FROM phone_status WHERE company_id = $1 AND phone_index = $2
"""


@dataclass(frozen=True)
class PhoneConfig:
    id: int
    company_id: str
    phone_index: int
    connection_type: str | None
    dialog360_client_id: str | None
    dialog360_channel_id: str | None
    api_key_encrypted: str | None
    display_phone_number: str | None
    status: str | None
    meta_phone_number_id: str | None
    meta_waba_id: str | None
    meta_access_token_encrypted: str | None
    process_name: str | None
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PhoneConfig:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def meta_access_token(self, box: SecretBox) -> str | None:
        return box.decrypt(self.meta_access_token_encrypted) if self.meta_access_token_encrypted else None

    def dialog360_api_key(self, box: SecretBox) -> str | None:
        return box.decrypt(self.api_key_encrypted) if self.api_key_encrypted else None

    def public(self) -> dict[str, Any]:
        """What an API response may show: never a secret, only whether one is set."""
        return {
            "companyId": self.company_id,
            "phoneIndex": self.phone_index,
            "connectionType": self.connection_type or "wwebjs",
            "processName": self.process_name,
            "status": self.status,
            "displayPhoneNumber": self.display_phone_number,
            "metaPhoneNumberId": self.meta_phone_number_id,
            "metaWabaId": self.meta_waba_id,
            "dialog360ClientId": self.dialog360_client_id,
            "dialog360ChannelId": self.dialog360_channel_id,
            "hasAccessToken": self.meta_access_token_encrypted is not None,
            "hasApiKey": self.api_key_encrypted is not None,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


async def get_phone(conn: asyncpg.Connection, company_id: str, phone_index: int) -> PhoneConfig | None:
    row = await conn.fetchrow(SELECT_PHONE, company_id, phone_index)
    return PhoneConfig.from_row(row) if row else None


async def company_phones(conn: asyncpg.Connection, company_id: str) -> list[PhoneConfig]:
    return [PhoneConfig.from_row(r) for r in await conn.fetch(SELECT_COMPANY_PHONES, company_id)]


async def phone_by_meta_phone_number_id(conn: asyncpg.Connection, phone_number_id: str) -> PhoneConfig | None:
    row = await conn.fetchrow(SELECT_BY_META_PHONE_NUMBER_ID, phone_number_id)
    return PhoneConfig.from_row(row) if row else None


async def phone_by_d360_channel(conn: asyncpg.Connection, channel_id: str) -> PhoneConfig | None:
    row = await conn.fetchrow(SELECT_BY_D360_CHANNEL, channel_id)
    return PhoneConfig.from_row(row) if row else None


async def phones_for_process(conn: asyncpg.Connection, process_name: str) -> list[PhoneConfig]:
    return [PhoneConfig.from_row(r) for r in await conn.fetch(SELECT_BY_PROCESS, process_name)]


async def set_phone_status(
    conn: asyncpg.Connection,
    company_id: str,
    phone_index: int,
    status: str,
    *,
    metadata: dict[str, Any] | None = None,
    phone_number: str | None = None,
    connection_type: str | None = None,
    process_name: str | None = None,
) -> dict[str, Any]:
    row = await conn.fetchrow(UPSERT_PHONE_STATUS, company_id, phone_index, status, phone_number, metadata or {},
                              connection_type, process_name)
    assert row is not None
    return dict(row)


async def get_phone_status(conn: asyncpg.Connection, company_id: str, phone_index: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_PHONE_STATUS, company_id, phone_index)
    return dict(row) if row else None


# --- writes (phone configuration API and CLI) -----------------------------------------------

# Only the columns named in $4 (a JSON object) change; connection_type and status always do.
UPSERT_PHONE = f"""
INSERT INTO phone_configs AS pc (
    company_id, phone_index, connection_type, status, display_phone_number, meta_phone_number_id,
    meta_waba_id, meta_access_token_encrypted, dialog360_client_id, dialog360_channel_id, api_key_encrypted)
VALUES ($1, $2, $3, $5, $4::jsonb->>'display_phone_number', $4::jsonb->>'meta_phone_number_id',
        $4::jsonb->>'meta_waba_id', $4::jsonb->>'meta_access_token_encrypted', $4::jsonb->>'dialog360_client_id',
        $4::jsonb->>'dialog360_channel_id', $4::jsonb->>'api_key_encrypted')
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    connection_type = EXCLUDED.connection_type,
    status = EXCLUDED.status,
    display_phone_number = CASE WHEN $4::jsonb ? 'display_phone_number' THEN EXCLUDED.display_phone_number
                                ELSE pc.display_phone_number END,
    meta_phone_number_id = CASE WHEN $4::jsonb ? 'meta_phone_number_id' THEN EXCLUDED.meta_phone_number_id
                                ELSE pc.meta_phone_number_id END,
    meta_waba_id = CASE WHEN $4::jsonb ? 'meta_waba_id' THEN EXCLUDED.meta_waba_id ELSE pc.meta_waba_id END,
    meta_access_token_encrypted = CASE WHEN $4::jsonb ? 'meta_access_token_encrypted'
                                       THEN EXCLUDED.meta_access_token_encrypted
                                       ELSE pc.meta_access_token_encrypted END,
    dialog360_client_id = CASE WHEN $4::jsonb ? 'dialog360_client_id' THEN EXCLUDED.dialog360_client_id
                               ELSE pc.dialog360_client_id END,
    dialog360_channel_id = CASE WHEN $4::jsonb ? 'dialog360_channel_id' THEN EXCLUDED.dialog360_channel_id
                                ELSE pc.dialog360_channel_id END,
    api_key_encrypted = CASE WHEN $4::jsonb ? 'api_key_encrypted' THEN EXCLUDED.api_key_encrypted
                             ELSE pc.api_key_encrypted END
RETURNING {PHONE_COLUMNS}
"""
DELETE_PHONE = "DELETE FROM phone_configs WHERE company_id = $1 AND phone_index = $2 RETURNING id"
DELETE_PHONE_STATUS = "DELETE FROM phone_status WHERE company_id = $1 AND phone_index = $2"
SELECT_ALL_PHONES = f"""
SELECT {PHONE_COLUMNS} FROM phone_configs
WHERE ($1::text[] IS NULL OR connection_type = ANY($1::text[]))
ORDER BY company_id, phone_index
"""
SELECT_COMPANY_STATUSES = """
SELECT coalesce(pc.phone_index, ps.phone_index) AS phone_index,
       coalesce(pc.connection_type, ps.connection_type) AS connection_type,
       coalesce(pc.process_name, ps.process_name) AS process_name,
       pc.status AS config_status, pc.display_phone_number, pc.id IS NOT NULL AS configured,
       ps.status, ps.phone_number, ps.last_seen, coalesce(ps.metadata, '{}'::jsonb) AS metadata
FROM (SELECT * FROM phone_configs WHERE company_id = $1) pc
FULL OUTER JOIN (SELECT * FROM phone_status WHERE company_id = $1) ps
  ON ps.phone_index = pc.phone_index
ORDER BY 1
"""

# Columns `upsert_phone` may set besides connection_type and status.
PHONE_FIELDS = ("display_phone_number", "meta_phone_number_id", "meta_waba_id", "meta_access_token_encrypted",
                "dialog360_client_id", "dialog360_channel_id", "api_key_encrypted")


async def upsert_phone(conn: asyncpg.Connection, company_id: str, phone_index: int, *, connection_type: str,
                       status: str, fields: dict[str, str | None]) -> PhoneConfig:
    """Create or update a phone; columns not named in ``fields`` keep their values.

    Secrets in ``fields`` must already be encrypted (``*_encrypted`` columns).
    """
    unknown = set(fields) - set(PHONE_FIELDS)
    if unknown:
        raise ValueError(f"not phone_configs fields: {sorted(unknown)}")
    row = await conn.fetchrow(UPSERT_PHONE, company_id, phone_index, connection_type, fields, status)
    assert row is not None
    return PhoneConfig.from_row(row)


async def delete_phone(conn: asyncpg.Connection, company_id: str, phone_index: int) -> bool:
    """Remove a phone's configuration and status row; False if there was none."""
    deleted = await conn.fetchval(DELETE_PHONE, company_id, phone_index)
    await conn.execute(DELETE_PHONE_STATUS, company_id, phone_index)
    return deleted is not None


async def all_phones(conn: asyncpg.Connection, connection_types: list[str] | None = None) -> list[PhoneConfig]:
    return [PhoneConfig.from_row(r) for r in await conn.fetch(SELECT_ALL_PHONES, connection_types)]


async def company_phone_statuses(conn: asyncpg.Connection, company_id: str) -> list[dict[str, Any]]:
    """Each phone of a company (configured or with a status row) with its live status."""
    return [dict(r) for r in await conn.fetch(SELECT_COMPANY_STATUSES, company_id)]
