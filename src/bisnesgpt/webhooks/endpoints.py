"""``webhook_endpoints`` rows: the queries, and the record they read into.

Secrets and custom headers are stored encrypted (``SecretBox``); this module moves the
ciphertexts only — ``service.py`` decides when to decrypt.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg

ENDPOINT_COLUMNS = """
    id, company_id, url, description, event_types, enabled, include_raw, headers_encrypted,
    secret_encrypted, previous_secret_encrypted, previous_secret_expires_at, consecutive_failures,
    failing_since, last_success_at, last_failure_at, disabled_at, disabled_reason, created_at, updated_at
"""

LOCK_COMPANY = "SELECT id FROM companies WHERE id = $1 FOR UPDATE"
COUNT_COMPANY_ENDPOINTS = "SELECT count(*) FROM webhook_endpoints WHERE company_id = $1"
INSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints (id, company_id, url, description, event_types, enabled, include_raw,
                               headers_encrypted, secret_encrypted, disabled_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $6 THEN NULL ELSE now() END)
RETURNING {ENDPOINT_COLUMNS}
"""
SELECT_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
SELECT_ENDPOINTS = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
WHERE ($1::text IS NULL OR company_id = $1) ORDER BY company_id, created_at, id
"""
# NULL parameters leave a field as it is; $6 says whether headers were given at all.
# Enabling clears the failure streak and any disabled notice; disabling records when.
UPDATE_ENDPOINT = f"""
UPDATE webhook_endpoints SET
    url = coalesce($2, url),
    description = coalesce($3, description),
    event_types = coalesce($4, event_types),
    include_raw = coalesce($5, include_raw),
    headers_encrypted = CASE WHEN $6 THEN $7 ELSE headers_encrypted END,
    enabled = coalesce($8, enabled),
    disabled_at = CASE WHEN $8 IS NULL OR $8 = enabled THEN disabled_at WHEN $8 THEN NULL ELSE now() END,
    disabled_reason = CASE WHEN $8 IS NULL OR $8 = enabled THEN disabled_reason ELSE NULL END,
    consecutive_failures = CASE WHEN $8 AND NOT enabled THEN 0 ELSE consecutive_failures END,
    failing_since = CASE WHEN $8 AND NOT enabled THEN NULL ELSE failing_since END
WHERE id = $1
RETURNING {ENDPOINT_COLUMNS}
"""
DELETE_ENDPOINT = "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id"
# The current secret becomes the previous one (signing too until it expires), unless the
# overlap is 0. A second rotation within the window drops the oldest secret.
ROTATE_SECRET = f"""
UPDATE webhook_endpoints SET
    previous_secret_encrypted = CASE WHEN $3 > 0 THEN secret_encrypted END,
    previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,
    secret_encrypted = $2
WHERE id = $1
RETURNING {ENDPOINT_COLUMNS}
"""


@dataclass(frozen=True)
class EndpointRecord:
    id: str
    company_id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    include_raw: bool
    headers_encrypted: str | None
    secret_encrypted: str
    previous_secret_encrypted: str | None
    previous_secret_expires_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> EndpointRecord:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["event_types"] = list(values["event_types"] or [])
        return cls(**values)


@dataclass(frozen=True)
class NewEndpoint:
    id: str
    company_id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    include_raw: bool
    headers_encrypted: str | None
    secret_encrypted: str


@dataclass(frozen=True)
class EndpointChanges:
    """Fields to change (None: leave as is); ``headers_given`` distinguishes "clear" from "keep"."""

    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    include_raw: bool | None = None
    headers_given: bool = False
    headers_encrypted: str | None = None
    enabled: bool | None = None


async def lock_company(conn: asyncpg.Connection, company_id: str) -> bool:
    """Serialise endpoint creation per company (so the per-company limit holds); False if no company."""
    return await conn.fetchval(LOCK_COMPANY, company_id) is not None


async def count_endpoints(conn: asyncpg.Connection, company_id: str) -> int:
    return int(await conn.fetchval(COUNT_COMPANY_ENDPOINTS, company_id))


async def insert_endpoint(conn: asyncpg.Connection, new: NewEndpoint) -> EndpointRecord:
    row = await conn.fetchrow(INSERT_ENDPOINT, new.id, new.company_id, new.url, new.description, new.event_types,
                              new.enabled, new.include_raw, new.headers_encrypted, new.secret_encrypted)
    assert row is not None
    return EndpointRecord.from_row(row)


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> EndpointRecord | None:
    row = await conn.fetchrow(SELECT_ENDPOINT, endpoint_id)
    return EndpointRecord.from_row(row) if row else None


async def list_endpoints(conn: asyncpg.Connection, company_id: str | None) -> list[EndpointRecord]:
    return [EndpointRecord.from_row(r) for r in await conn.fetch(SELECT_ENDPOINTS, company_id)]


async def update_endpoint(conn: asyncpg.Connection, endpoint_id: str,
                          changes: EndpointChanges) -> EndpointRecord | None:
    row = await conn.fetchrow(UPDATE_ENDPOINT, endpoint_id, changes.url, changes.description, changes.event_types,
                              changes.include_raw, changes.headers_given, changes.headers_encrypted, changes.enabled)
    return EndpointRecord.from_row(row) if row else None


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> bool:
    return await conn.fetchval(DELETE_ENDPOINT, endpoint_id) is not None


async def rotate_secret(conn: asyncpg.Connection, endpoint_id: str, secret_encrypted: str,
                        overlap_seconds: float) -> EndpointRecord | None:
    row = await conn.fetchrow(ROTATE_SECRET, endpoint_id, secret_encrypted, float(overlap_seconds))
    return EndpointRecord.from_row(row) if row else None
