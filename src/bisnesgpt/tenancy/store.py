"""Companies and API keys. Keys are stored as SHA-256 only; the key is shown once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bisnesgpt.core.crypto import hash_api_key, new_api_key
from bisnesgpt.core.errors import Conflict, NotFound

INSERT_COMPANY = "INSERT INTO companies (id, name) VALUES ($1, $2) RETURNING id, name, status, created_at"
SELECT_COMPANIES = "SELECT id, name, status, created_at FROM companies ORDER BY id"
SELECT_COMPANY = "SELECT id, name, status, created_at FROM companies WHERE id = $1"
INSERT_API_KEY = """
INSERT INTO api_keys (company_id, role, name, key_prefix, key_hash)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, company_id, role, name, key_prefix, created_at, last_used_at, revoked_at
"""
SELECT_KEY_BY_HASH = """
SELECT k.id, k.company_id, k.role, k.name, k.key_prefix, k.created_at, k.last_used_at, k.revoked_at,
       c.status AS company_status
FROM api_keys k LEFT JOIN companies c ON c.id = k.company_id
WHERE k.key_hash = $1
"""
SELECT_KEYS = """
SELECT id, company_id, role, name, key_prefix, created_at, last_used_at, revoked_at FROM api_keys
WHERE ($1::text IS NULL OR company_id = $1) ORDER BY id
"""
REVOKE_KEY = "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id"
# last_used_at is advisory: written at most once a minute per key to keep auth cheap
# (checked first against the value just read, then again in SQL against concurrent writers).
TOUCH_EVERY = timedelta(minutes=1)
TOUCH_KEY = """
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: int
    company_id: str | None
    role: str
    name: str
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(row["id"], row["company_id"], row["role"], row["name"], row["key_prefix"], row["created_at"],
                  row["last_used_at"], row["revoked_at"])


async def create_company(conn: asyncpg.Connection, company_id: str, name: str) -> Company:
    try:
        row = await conn.fetchrow(INSERT_COMPANY, company_id, name)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"company {company_id!r} already exists") from exc
    except asyncpg.CheckViolationError as exc:
        raise Conflict(f"company id {company_id!r} must be 1-64 of A-Z a-z 0-9 _ . -") from exc
    assert row is not None
    return Company(**dict(row))


async def list_companies(conn: asyncpg.Connection) -> list[Company]:
    return [Company(**dict(r)) for r in await conn.fetch(SELECT_COMPANIES)]


async def get_company(conn: asyncpg.Connection, company_id: str) -> Company:
    row = await conn.fetchrow(SELECT_COMPANY, company_id)
    if row is None:
        raise NotFound(f"company {company_id!r} not found")
    return Company(**dict(row))


async def create_api_key(conn: asyncpg.Connection, *, company_id: str | None, name: str = "") -> tuple[ApiKey, str]:
    """Create a key; returns (record, plaintext key). company_id None = operator (admin) key."""
    plaintext = new_api_key("bgpt_admin" if company_id is None else "bgpt")
    row = await conn.fetchrow(INSERT_API_KEY, company_id, "admin" if company_id is None else "company", name,
                              plaintext[:14], hash_api_key(plaintext))
    assert row is not None
    return _key(row), plaintext


async def list_api_keys(conn: asyncpg.Connection, company_id: str | None = None) -> list[ApiKey]:
    return [_key(r) for r in await conn.fetch(SELECT_KEYS, company_id)]


async def revoke_api_key(conn: asyncpg.Connection, key_id: int) -> None:
    if await conn.fetchval(REVOKE_KEY, key_id) is None:
        raise NotFound(f"no active API key with id {key_id}")


async def find_key(conn: asyncpg.Connection, plaintext: str) -> tuple[ApiKey, str | None] | None:
    """The key record and its company's status, or None."""
    row = await conn.fetchrow(SELECT_KEY_BY_HASH, hash_api_key(plaintext))
    if row is None:
        return None
    return _key(row), row["company_status"]


def touch_due(record: ApiKey) -> bool:
    """Whether ``last_used_at`` is old enough to be written again (saves a round trip per request)."""
    last = record.last_used_at
    return last is None or datetime.now(UTC) - last >= TOUCH_EVERY


async def touch_key(conn: asyncpg.Connection, key_id: int) -> None:
    await conn.execute(TOUCH_KEY, key_id)
