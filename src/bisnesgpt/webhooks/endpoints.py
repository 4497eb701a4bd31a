"""``webhook_endpoints`` rows: the queries, and the record they read into.

Secrets and custom headers are stored encrypted (``SecretBox``), each bound to its endpoint's
id; this module moves the ciphertexts only — ``service.py`` decides when to decrypt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Self

import asyncpg

from bisnesgpt.core.crypto import SecretColumn
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import Row, RowRecord

SQL = load_queries("bisnesgpt.webhooks")

# The encrypted columns, bound to the endpoint's id. A rotation moves the signing secret from
# ``secret_encrypted`` to ``previous_secret_encrypted`` in SQL, so both hold "the endpoint's
# signing secret" and share one binding: still no other endpoint's row can take either.
SIGNING_SECRET = SecretColumn("webhook_endpoints", "secret_encrypted")
CUSTOM_HEADERS = SecretColumn("webhook_endpoints", "headers_encrypted")


@dataclass(frozen=True)
class NewEndpoint:
    """An endpoint to insert: what its owner chose (already checked) and its ciphertexts."""

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
class EndpointRecord(NewEndpoint, RowRecord):
    """A stored endpoint: what it was created with, its secret rotation and its failure streak."""

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
    def from_row(cls, row: Row) -> Self:
        """The record of a ``webhook_endpoints`` row (``event_types`` always a list)."""
        record = super().from_row(row)
        return dataclasses.replace(record, event_types=list(record.event_types or []))


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
    return await conn.fetchval(SQL.lock_company, company_id) is not None


async def count_endpoints(conn: asyncpg.Connection, company_id: str) -> int:
    """How many endpoints the company has (checked against the per-company limit)."""
    return int(await conn.fetchval(SQL.count_company_endpoints, company_id))


async def insert_endpoint(conn: asyncpg.Connection, new: NewEndpoint) -> EndpointRecord:
    """Store a new endpoint; one created disabled gets ``disabled_at`` now."""
    row = await conn.fetchrow(SQL.insert_endpoint, new.id, new.company_id, new.url, new.description,
                              new.event_types, new.enabled, new.include_raw, new.headers_encrypted,
                              new.secret_encrypted)
    assert row is not None
    return EndpointRecord.from_row(row)


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> EndpointRecord | None:
    """One endpoint by id, whichever company it belongs to (the service applies the scope)."""
    return await EndpointRecord.fetch_one(conn, SQL.get_endpoint, endpoint_id)


async def list_endpoints(conn: asyncpg.Connection, company_id: str | None) -> list[EndpointRecord]:
    """A company's endpoints (None: every company's), by company then creation time."""
    return [EndpointRecord.from_row(r) for r in await conn.fetch(SQL.list_endpoints, company_id)]


async def update_endpoint(conn: asyncpg.Connection, endpoint_id: str,
                          changes: EndpointChanges) -> EndpointRecord | None:
    """Apply ``changes`` (enabling clears the failure streak); None if the endpoint is gone."""
    return await EndpointRecord.fetch_one(conn, SQL.update_endpoint, endpoint_id, changes.url, changes.description,
                                          changes.event_types, changes.include_raw, changes.headers_given,
                                          changes.headers_encrypted, changes.enabled)


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> bool:
    """Delete an endpoint and its delivery log; False if it did not exist."""
    return await conn.fetchval(SQL.delete_endpoint, endpoint_id) is not None


async def rotate_secret(conn: asyncpg.Connection, endpoint_id: str, secret_encrypted: str,
                        overlap_seconds: float) -> EndpointRecord | None:
    """Sign with a new secret; the current one keeps signing for ``overlap_seconds`` (0: stops now)."""
    return await EndpointRecord.fetch_one(conn, SQL.rotate_secret, endpoint_id, secret_encrypted,
                                          float(overlap_seconds))
