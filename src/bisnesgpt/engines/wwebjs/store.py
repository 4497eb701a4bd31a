"""The engine's queries: ``wwebjs_sessions``, ``wwebjs_session_commands`` and status writes.

A session status change is one transaction: the ``phone_status`` row and a tenant
``session.status`` event (the outbox tenant webhooks fan out from); the ``bot:event``
publish follows the commit (pub/sub is best effort, the row is the truth).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.messaging.events import SESSION_STATUS, record_tenant_event
from bisnesgpt.phones.store import PhoneStatusRow, set_phone_status

SESSION_STATUSES = ("initializing", "qr", "pairing_code", "authenticated", "ready", "error", "disconnected", "pending")
COMMAND_ACTIONS = ("start", "stop", "restart", "logout", "pairing_code")

SELECT_WWEBJS_PHONES = """
SELECT pc.company_id, pc.phone_index, coalesce(ws.desired_state, 'running') AS desired_state,
       ws.breaker_tripped_at, ws.breaker_reason, (c.status = 'active') AS company_active
FROM phone_configs pc
JOIN companies c ON c.id = pc.company_id
LEFT JOIN wwebjs_sessions ws ON ws.company_id = pc.company_id AND ws.phone_index = pc.phone_index
WHERE pc.process_name = 'wwebjs'
ORDER BY pc.company_id, pc.phone_index
"""
SELECT_SESSION = """
SELECT company_id, phone_index, desired_state, driver, auth_state, device_id, phone_number,
       breaker_tripped_at, breaker_reason, last_ready_at, stopped_reason, updated_at
FROM wwebjs_sessions WHERE company_id = $1 AND phone_index = $2
"""
SAVE_AUTH = """
INSERT INTO wwebjs_sessions (company_id, phone_index, driver, auth_state, device_id, phone_number)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    driver = EXCLUDED.driver, auth_state = EXCLUDED.auth_state,
    device_id = coalesce(EXCLUDED.device_id, wwebjs_sessions.device_id),
    phone_number = coalesce(EXCLUDED.phone_number, wwebjs_sessions.phone_number)
"""
CLEAR_AUTH = "UPDATE wwebjs_sessions SET auth_state = NULL, device_id = NULL WHERE company_id = $1 AND phone_index = $2"
SET_DESIRED = """
INSERT INTO wwebjs_sessions (company_id, phone_index, desired_state, stopped_reason)
VALUES ($1, $2, $3, $4)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    desired_state = EXCLUDED.desired_state, stopped_reason = EXCLUDED.stopped_reason,
    breaker_tripped_at = CASE WHEN EXCLUDED.desired_state = 'running' THEN NULL
                              ELSE wwebjs_sessions.breaker_tripped_at END,
    breaker_reason = CASE WHEN EXCLUDED.desired_state = 'running' THEN NULL ELSE wwebjs_sessions.breaker_reason END
"""
TRIP_BREAKER = """
INSERT INTO wwebjs_sessions (company_id, phone_index, breaker_tripped_at, breaker_reason)
VALUES ($1, $2, now(), $3)
ON CONFLICT (company_id, phone_index) DO UPDATE SET breaker_tripped_at = now(), breaker_reason = EXCLUDED.breaker_reason
"""
MARK_READY = """
INSERT INTO wwebjs_sessions (company_id, phone_index, last_ready_at, phone_number) VALUES ($1, $2, now(), $3)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    last_ready_at = now(), phone_number = coalesce(EXCLUDED.phone_number, wwebjs_sessions.phone_number)
"""
SELECT_PENDING_COMMANDS = """
SELECT id, company_id, phone_index, action, args, created_at FROM wwebjs_session_commands
WHERE state = 'pending' ORDER BY id LIMIT 200
"""
FINISH_COMMAND = """
UPDATE wwebjs_session_commands SET state = $2, result = $3::jsonb, handled_by = $4, handled_at = now()
WHERE id = $1 AND state = 'pending'
"""
INSERT_COMMAND = """
INSERT INTO wwebjs_session_commands (company_id, phone_index, action, args, requested_by)
VALUES ($1, $2, $3, $4::jsonb, $5)
RETURNING id, company_id, phone_index, action, args, state, result, requested_by, handled_by, created_at, handled_at
"""
SELECT_COMMAND = """
SELECT id, company_id, phone_index, action, args, state, result, requested_by, handled_by, created_at, handled_at
FROM wwebjs_session_commands WHERE id = $1 AND company_id = $2 AND phone_index = $3
"""


@dataclass(frozen=True)
class WantedPhone:
    key: SessionKey
    desired_state: str
    breaker_tripped_at: datetime | None
    breaker_reason: str | None
    company_active: bool

    @property
    def should_run(self) -> bool:
        return self.company_active and self.desired_state == "running" and self.breaker_tripped_at is None


@dataclass(frozen=True)
class Command:
    id: int
    key: SessionKey
    action: str
    args: dict[str, Any]


async def wwebjs_phones(conn: asyncpg.Connection) -> list[WantedPhone]:
    rows = await conn.fetch(SELECT_WWEBJS_PHONES)
    return [WantedPhone(SessionKey(r["company_id"], r["phone_index"]), r["desired_state"],
                        r["breaker_tripped_at"], r["breaker_reason"], r["company_active"]) for r in rows]


class AuthStore:
    """The session store for driver credentials: encrypted JSON in ``wwebjs_sessions.auth_state``."""

    def __init__(self, box: SecretBox, driver_name: str) -> None:
        self.box = box
        self.driver_name = driver_name

    async def load(self, conn: asyncpg.Connection, key: SessionKey) -> dict[str, Any] | None:
        row = await conn.fetchrow(SELECT_SESSION, key.company_id, key.phone_index)
        if row is None or not row["auth_state"]:
            return None
        if row["driver"] and row["driver"] != self.driver_name:
            return None  # paired through another driver: those credentials mean nothing here
        loaded: dict[str, Any] = json.loads(self.box.decrypt(row["auth_state"]))
        return loaded

    async def save(self, conn: asyncpg.Connection, key: SessionKey, auth_state: dict[str, Any], *,
                   device_id: str | None, phone_number: str | None) -> None:
        sealed = self.box.encrypt(json.dumps(auth_state, separators=(",", ":")))
        await conn.execute(SAVE_AUTH, key.company_id, key.phone_index, self.driver_name, sealed, device_id,
                           phone_number)

    async def clear(self, conn: asyncpg.Connection, key: SessionKey) -> None:
        await conn.execute(CLEAR_AUTH, key.company_id, key.phone_index)


async def set_desired_state(conn: asyncpg.Connection, key: SessionKey, state: str, reason: str | None = None) -> None:
    """``running`` also clears a tripped breaker (an operator acted)."""
    await conn.execute(SET_DESIRED, key.company_id, key.phone_index, state, reason)


async def trip_breaker(conn: asyncpg.Connection, key: SessionKey, reason: str) -> None:
    await conn.execute(TRIP_BREAKER, key.company_id, key.phone_index, reason)


async def mark_ready(conn: asyncpg.Connection, key: SessionKey, phone_number: str | None) -> None:
    await conn.execute(MARK_READY, key.company_id, key.phone_index, phone_number)


async def write_status(conn: asyncpg.Connection, key: SessionKey, status: str, metadata: dict[str, Any], *,
                       phone_number: str | None = None) -> PhoneStatusRow:
    """``phone_status`` + tenant ``session.status`` event, in the caller's transaction."""
    row = await set_phone_status(conn, key.company_id, key.phone_index, status, metadata=metadata,
                                 phone_number=phone_number, connection_type="wwebjs", process_name="wwebjs")
    data: dict[str, Any] = {"status": status, "phone_index": key.phone_index,
                            "phone_number": row.get("phone_number")}
    for name in ("qrCode", "pairingCode", "reason", "retryInMs", "retryAt", "loggedOut"):
        if name in metadata:
            data[name] = metadata[name]
    await record_tenant_event(conn, company_id=key.company_id, phone_index=key.phone_index, type=SESSION_STATUS,
                              data=data)
    return row


async def pending_commands(conn: asyncpg.Connection) -> list[Command]:
    rows = await conn.fetch(SELECT_PENDING_COMMANDS)
    return [Command(r["id"], SessionKey(r["company_id"], r["phone_index"]), r["action"], dict(r["args"] or {}))
            for r in rows]


async def finish_command(conn: asyncpg.Connection, command_id: int, *, ok: bool, result: dict[str, Any],
                         handled_by: str) -> None:
    await conn.execute(FINISH_COMMAND, command_id, "done" if ok else "failed", result, handled_by)


async def insert_command(conn: asyncpg.Connection, key: SessionKey, action: str, args: dict[str, Any],
                         requested_by: str) -> dict[str, Any]:
    row = await conn.fetchrow(INSERT_COMMAND, key.company_id, key.phone_index, action, args, requested_by)
    assert row is not None
    return dict(row)


async def load_command(conn: asyncpg.Connection, key: SessionKey, command_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_COMMAND, command_id, key.company_id, key.phone_index)
    return dict(row) if row else None
