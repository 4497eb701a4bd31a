"""Companies and API keys. Keys are stored as SHA-256 only; the key is shown once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import asyncpg

from bisnesgpt.core.crypto import hash_api_key, new_api_key
from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord

SQL = load_queries("bisnesgpt.tenancy")
# last_used_at is advisory: written at most once a minute per key to keep auth cheap
# (checked first against the value just read, then again in SQL against concurrent writers).
TOUCH_EVERY = timedelta(minutes=1)

CompanyStatus = Literal["active", "disabled"]
"""A disabled company's keys are refused."""
KeyRole = Literal["company", "admin"]
"""``company``: one company's key; ``admin``: an operator key (every company, no company id)."""
Scope = Literal["messages:send", "messages:read", "sessions:manage", "webhooks:manage"]
"""What a company key may do: send (and act on chats), read messages/chats/media/usage, manage
phones and WhatsApp-Web sessions, manage webhook endpoints. A key without scopes has them all."""
SCOPES: tuple[Scope, ...] = get_args(Scope)


@dataclass(frozen=True)
class Company(RowRecord):
    """A tenant: its id (used in every URL), display name and status."""

    id: str
    name: str
    status: CompanyStatus
    created_at: datetime


@dataclass(frozen=True)
class SendQuota(RowRecord):
    """How many messages a company may send per minute and per day (None: no quota)."""

    send_quota_per_minute: int | None
    send_quota_per_day: int | None

    @property
    def per_minute(self) -> int | None:
        """Sends allowed per minute, or None."""
        return self.send_quota_per_minute

    @property
    def per_day(self) -> int | None:
        """Sends allowed per day, or None."""
        return self.send_quota_per_day

    def describe(self) -> str:
        """The quota in words (``"100 per minute, 5000 per day"``, ``"none"``)."""
        parts = [f"{n} per {unit}" for n, unit in ((self.per_minute, "minute"), (self.per_day, "day")) if n]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class ApiKey(RowRecord):
    """An API key as stored: who it is for and when it was used, never the key itself."""

    id: int
    company_id: str | None
    role: KeyRole
    name: str
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: list[Scope] | None  # None: every scope
    phone_indexes: list[int] | None  # None: every phone of the company
    expires_at: datetime | None  # None: never

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the key's expiry has passed."""
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


@dataclass(frozen=True)
class KeyLimits:
    """What a new key may do: scopes and phones (None: all of them), and when it expires (None: never)."""

    scopes: tuple[Scope, ...] | None = None
    phone_indexes: tuple[int, ...] | None = None
    expires_at: datetime | None = None


def check_limits(limits: KeyLimits, *, operator: bool) -> KeyLimits:
    """``limits`` de-duplicated and checked (ValidationFailed naming the field otherwise)."""
    def refuse(field: str, message: str) -> ValidationFailed:
        return ValidationFailed(f"{field}: {message}", errors=[{"field": field, "message": message, "type": "value"}])

    if operator and (limits.scopes is not None or limits.phone_indexes is not None):
        raise refuse("scope", "operator keys reach everything: scopes and phone limits are for company keys")
    scopes = None if limits.scopes is None else tuple(dict.fromkeys(limits.scopes))
    if scopes is not None and (not scopes or any(scope not in SCOPES for scope in scopes)):
        raise refuse("scope", f"give one or more of {', '.join(SCOPES)}")
    phones = None if limits.phone_indexes is None else tuple(sorted(set(limits.phone_indexes)))
    if phones is not None and (not phones or any(index < 0 for index in phones)):
        raise refuse("phone", "give one or more phone indexes (0, 1, …)")
    if limits.expires_at is not None and limits.expires_at.tzinfo is None:
        raise refuse("expires", "give a time zone (or Z for UTC)")
    if limits.expires_at is not None and limits.expires_at <= datetime.now(UTC):
        raise refuse("expires", "must be in the future")
    return KeyLimits(scopes, phones, limits.expires_at)


def _limit_columns(limits: KeyLimits) -> tuple[list[Scope] | None, list[int] | None, datetime | None]:
    """The ``scopes``, ``phone_indexes`` and ``expires_at`` columns of checked limits."""
    return (list(limits.scopes) if limits.scopes is not None else None,
            list(limits.phone_indexes) if limits.phone_indexes is not None else None, limits.expires_at)


async def create_company(conn: asyncpg.Connection, company_id: str, name: str) -> Company:
    """A new active company; Conflict when the id is taken or not a valid id."""
    try:
        row = await conn.fetchrow(SQL.insert_company, company_id, name)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"company {company_id!r} already exists") from exc
    except asyncpg.CheckViolationError as exc:
        raise Conflict(f"company id {company_id!r} must be 1-64 of A-Z a-z 0-9 _ . -") from exc
    assert row is not None
    return Company.from_row(row)


async def list_companies(conn: asyncpg.Connection) -> list[Company]:
    """Every company, by id."""
    return [Company.from_row(r) for r in await conn.fetch(SQL.list_companies)]


async def get_company(conn: asyncpg.Connection, company_id: str) -> Company:
    """One company; NotFound when there is none with this id."""
    row = await conn.fetchrow(SQL.get_company, company_id)
    if row is None:
        raise NotFound(f"company {company_id!r} not found")
    return Company.from_row(row)


async def set_company_status(conn: asyncpg.Connection, company_id: str, status: CompanyStatus) -> Company:
    """Enable (``active``) or disable a company; its keys are refused while it is disabled. NotFound for
    an unknown company."""
    row = await conn.fetchrow(SQL.set_company_status, company_id, status)
    if row is None:
        raise NotFound(f"company {company_id!r} not found")
    return Company.from_row(row)


async def create_api_key(conn: asyncpg.Connection, *, company_id: str | None, name: str = "",
                         limits: KeyLimits | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns (record, plaintext key). company_id None = operator (admin) key.

    ``limits`` narrow a company key to some scopes and phones, and give any key an expiry.
    """
    checked = check_limits(limits or KeyLimits(), operator=company_id is None)
    plaintext = new_api_key("bgpt_admin" if company_id is None else "bgpt")
    row = await conn.fetchrow(SQL.insert_api_key, company_id, "admin" if company_id is None else "company", name,
                              plaintext[:14], hash_api_key(plaintext), *_limit_columns(checked))
    assert row is not None
    return ApiKey.from_row(row), plaintext


async def list_api_keys(conn: asyncpg.Connection, company_id: str | None = None) -> list[ApiKey]:
    """Every key, revoked ones too (or one company's), by id."""
    return [ApiKey.from_row(r) for r in await conn.fetch(SQL.list_api_keys, company_id)]


async def get_api_key(conn: asyncpg.Connection, key_id: int) -> ApiKey:
    """One key, revoked or not; NotFound when there is none with this id."""
    row = await conn.fetchrow(SQL.get_api_key, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    return ApiKey.from_row(row)


async def revoke_api_key(conn: asyncpg.Connection, key_id: int) -> None:
    """Revoke a key at once; NotFound when there is no active key with this id."""
    if await conn.fetchval(SQL.revoke_api_key, key_id) is None:
        raise NotFound(f"no active API key with id {key_id}")


async def set_api_key_limits(conn: asyncpg.Connection, key_id: int, limits: KeyLimits) -> ApiKey:
    """Replace a key's scopes, phones and expiry (checked as for a new key); it keeps its secret.

    NotFound for an unknown key, Conflict for a revoked one. The caller announces the change
    (``api:keys``) so that no process keeps authorising by the old limits.
    """
    key = await get_api_key(conn, key_id)
    checked = check_limits(limits, operator=key.role == "admin")
    row = await conn.fetchrow(SQL.set_api_key_limits, key_id, *_limit_columns(checked))
    if row is None:
        raise Conflict(f"API key {key_id} is revoked: its limits cannot change; create a new key")
    return ApiKey.from_row(row)


async def find_key(conn: asyncpg.Connection, plaintext: str) -> tuple[ApiKey, CompanyStatus | None] | None:
    """The key record and its company's status, or None."""
    row = await conn.fetchrow(SQL.find_key_by_hash, hash_api_key(plaintext))
    if row is None:
        return None
    return ApiKey.from_row(row), row["company_status"]


def touch_due(record: ApiKey) -> bool:
    """Whether ``last_used_at`` is old enough to be written again (saves a round trip per request)."""
    last = record.last_used_at
    return last is None or datetime.now(UTC) - last >= TOUCH_EVERY


async def touch_key(conn: asyncpg.Connection, key_id: int) -> None:
    """Record that the key was used now (skipped in SQL when another request just did)."""
    await conn.execute(SQL.touch_api_key, key_id)


async def send_quota(conn: asyncpg.Connection, company_id: str) -> SendQuota:
    """The company's send quota (no quota for an unknown company: the send itself then answers 404)."""
    row = await conn.fetchrow(SQL.get_send_quota, company_id)
    return SendQuota.from_row(row) if row is not None else SendQuota(None, None)


async def set_send_quota(conn: asyncpg.Connection, company_id: str, *, per_minute: int | None,
                         per_day: int | None) -> SendQuota:
    """Set (None: remove) the company's per-minute and per-day send quotas; NotFound for an unknown company."""
    row = await conn.fetchrow(SQL.set_send_quota, company_id, per_minute, per_day)
    if row is None:
        raise NotFound(f"company {company_id!r} not found")
    return SendQuota.from_row(row)


async def live_key_ids(conn: asyncpg.Connection, key_ids: list[int]) -> set[int]:
    """Which of ``key_ids`` are still valid (not revoked; a company key's company active)."""
    return {int(r["id"]) for r in await conn.fetch(SQL.live_key_ids, key_ids)}
