"""``Idempotency-Key``: exactly one message per key and company, and the same answer every time.

The lifecycle of a key (table ``idempotency_keys``, kept ``IDEMPOTENCY_TTL`` ≥ 24 h):

1. ``claim`` — in the transaction that inserts the message (``messaging.sending``), so a
   process killed before COMMIT leaves no key behind: a new key is inserted ``in_flight``
   (a concurrent request with the same key waits on its row lock until that commits). An existing key
   answers at once — a different request under it → 422; still ``in_flight`` → 409;
   ``completed`` → the stored status and body (a replay). An ``in_flight`` key older than
   ``STALE_AFTER`` belonged to a process that died mid-request and may be taken over by
   the same request (the message row, unique per key, then tells what was already done).
2. ``complete`` — in the same transaction as the message insert when the answer is known
   then (a 202), so a stored message always has its stored answer; after ``?wait=``
   otherwise: with ``?wait=`` the key stays ``in_flight`` (committed with the message)
   until the answer is known, and a retry meanwhile gets 409.
3. Nothing to release: a request that fails before storing anything rolls its claim back
   with the message, so a retry simply runs again.

``lookup`` is the read-only fast path before routing: a completed key replays at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import asyncpg

from bisnesgpt.core.errors import BadRequest, Conflict, ValidationFailed
from bisnesgpt.core.jsontypes import JsonValue
from bisnesgpt.db.queries import load_queries

if TYPE_CHECKING:
    from bisnesgpt.messaging.sending import SendAnswer

SQL = load_queries("bisnesgpt.messaging")

MAX_KEY_LENGTH = 255
# Longer than the longest legitimate request (?wait= is capped at 30 s).
STALE_AFTER = timedelta(seconds=90)


@dataclass(frozen=True)
class IdempotencyKey:
    """One request's key and fingerprint (method, path and canonical JSON body)."""

    company_id: str
    key: str
    request_hash: str
    method: str
    path: str


@dataclass(frozen=True)
class StoredResponse:
    """The answer kept for a key: replayed as it was to every later request with the key."""

    status: int
    body: SendAnswer


def validate_key(raw: str) -> str:
    """The header's value if it is a usable key (400 problem otherwise)."""
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not raw.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
                         errors=[{"field": "Idempotency-Key", "message": "1-255 printable characters",
                                  "type": "value_error"}])
    return raw


def fingerprint(method: str, path: str, body: JsonValue) -> str:
    """Same method, path and JSON body (key order and whitespace ignored) → same hash."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{canonical}".encode()).hexdigest()


async def claim(conn: asyncpg.Connection, key: IdempotencyKey, ttl: timedelta) -> StoredResponse | None:
    """Claim the key for this request; a stored response to replay, or raise 409/422."""
    if await _take(conn, key, ttl):
        return None
    row = await conn.fetchrow(SQL.select_idempotency_key, key.company_id, key.key, STALE_AFTER, False)
    if row is None:  # expired and cleaned up between the two statements: try once more
        if await _take(conn, key, ttl):
            return None
        raise Conflict("the Idempotency-Key is being claimed concurrently; retry")
    return _answer(row, key)


async def _take(conn: asyncpg.Connection, key: IdempotencyKey, ttl: timedelta) -> bool:
    """Insert the key in_flight (or take over an expired/stale one); False when it is not ours."""
    claimed = await conn.fetchval(SQL.claim_idempotency_key, key.company_id, key.key, key.request_hash, key.method,
                                  key.path, ttl, STALE_AFTER)
    return claimed is not None


async def lookup(conn: asyncpg.Connection, key: IdempotencyKey) -> StoredResponse | None:
    """The stored answer of a completed, unexpired key; raise 422 (other request) / 409 (in flight)."""
    row = await conn.fetchrow(SQL.select_idempotency_key, key.company_id, key.key, STALE_AFTER, True)
    if row is None:
        return None
    return _answer(row, key, stale_ok=True)


def _answer(row: asyncpg.Record, key: IdempotencyKey, *, stale_ok: bool = False) -> StoredResponse | None:
    if row["request_hash"] != key.request_hash:
        raise ValidationFailed(
            "this Idempotency-Key was used for a different request "
            f"({row['method']} {row['path']} with another body)",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different request body or route",
                     "type": "idempotency_mismatch"}],
        )
    if row["state"] == "in_flight":
        if stale_ok and row["stale"]:
            return None  # its process died mid-request: claim() takes it over
        raise Conflict("a request with this Idempotency-Key is still in flight; retry later",
                       errors=[{"field": "Idempotency-Key", "message": "in flight", "type": "in_flight"}])
    # Written by complete() from a SendAnswer: read back as one.
    return StoredResponse(int(row["response_status"]), cast("SendAnswer", dict(row["response_body"])))


async def complete(conn: asyncpg.Connection, key: IdempotencyKey, response: StoredResponse) -> None:
    """Store the answer to replay for the key (its state becomes ``completed``)."""
    await conn.execute(SQL.complete_idempotency_key, key.company_id, key.key, response.status, response.body)

