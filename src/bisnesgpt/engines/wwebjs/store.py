"""The engine's tables: ``wwebjs_sessions`` (what the operator wants, the breaker, the credentials)
and ``wwebjs_session_commands`` (operator actions for whichever process owns the session).

Session status writes (``phone_status`` and the tenant event) are in ``status``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import asyncpg

from bisnesgpt.core.crypto import SecretBox, SecretColumn
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord
from bisnesgpt.engines.wwebjs.balance import Member
from bisnesgpt.engines.wwebjs.driver import AuthState, SessionKey

SQL = load_queries("bisnesgpt.engines.wwebjs")

DesiredState = Literal["running", "stopped"]
# ``group`` / ``chat``: a group or chat operation (``args.op``), run on the session's driver by its owner.
CommandAction = Literal["start", "stop", "restart", "logout", "pairing_code", "group", "chat"]
CommandState = Literal["pending", "done", "failed"]
COMMAND_ACTIONS: tuple[CommandAction, ...] = get_args(CommandAction)


@dataclass(frozen=True)
class WantedPhone:
    """A wwebjs phone and what its operator wants for it."""

    key: SessionKey
    desired_state: DesiredState
    breaker_tripped_at: datetime | None
    breaker_reason: str | None
    company_active: bool

    @property
    def should_run(self) -> bool:
        """A session is wanted: the company is active, nobody stopped it, its breaker is closed."""
        return self.company_active and self.desired_state == "running" and self.breaker_tripped_at is None


@dataclass(frozen=True)
class Command:
    """A pending operator command, as the session manager carries it out."""

    id: int
    key: SessionKey
    action: CommandAction
    args: JsonObject


@dataclass(frozen=True)
class CommandRecord(RowRecord):
    """A ``wwebjs_session_commands`` row: the action, its arguments, state and result."""

    id: int
    company_id: str
    phone_index: int
    action: CommandAction
    args: JsonObject
    state: CommandState
    result: JsonObject | None
    requested_by: str
    handled_by: str | None
    created_at: datetime
    handled_at: datetime | None


async def wwebjs_phones(conn: asyncpg.Connection) -> list[WantedPhone]:
    """Every wwebjs phone with its desired state, breaker and company status."""
    rows = await conn.fetch(SQL.wanted_phones)
    return [WantedPhone(SessionKey(r["company_id"], r["phone_index"]), r["desired_state"],
                        r["breaker_tripped_at"], r["breaker_reason"], r["company_active"]) for r in rows]


# A session's driver credentials, bound to its phone (company id, phone index).
AUTH_STATE = SecretColumn("wwebjs_sessions", "auth_state")


class AuthStore:
    """The session store for driver credentials: encrypted JSON in ``wwebjs_sessions.auth_state``."""

    def __init__(self, box: SecretBox, driver_name: str) -> None:
        self.box = box
        self.driver_name = driver_name

    async def load(self, conn: asyncpg.Connection, key: SessionKey) -> AuthState | None:
        """The stored credentials; None when there are none, or when another driver paired the session."""
        row = await conn.fetchrow(SQL.session_auth, key.company_id, key.phone_index)
        if row is None or not row["auth_state"]:
            return None
        if row["driver"] and row["driver"] != self.driver_name:
            return None  # paired through another driver: those credentials mean nothing here
        loaded = json.loads(self.box.decrypt(row["auth_state"], AUTH_STATE.at(key.company_id, key.phone_index)))
        return loaded if isinstance(loaded, dict) else None

    async def save(self, conn: asyncpg.Connection, key: SessionKey, auth_state: AuthState, *,
                   device_id: str | None, phone_number: str | None) -> None:
        """Encrypt and store the credentials of a session that paired (or resumed)."""
        sealed = self.box.encrypt(json.dumps(auth_state, separators=(",", ":")),
                                  AUTH_STATE.at(key.company_id, key.phone_index))
        await conn.execute(SQL.save_auth, key.company_id, key.phone_index, self.driver_name, sealed, device_id,
                           phone_number)

    async def clear(self, conn: asyncpg.Connection, key: SessionKey) -> None:
        """Forget the credentials (logged out)."""
        await conn.execute(SQL.clear_auth, key.company_id, key.phone_index)


async def set_desired_state(conn: asyncpg.Connection, key: SessionKey, state: DesiredState,
                            reason: str | None = None) -> None:
    """Record what the operator wants; ``running`` also clears a tripped breaker (an operator acted)."""
    await conn.execute(SQL.set_desired_state, key.company_id, key.phone_index, state, reason)


async def trip_breaker(conn: asyncpg.Connection, key: SessionKey, reason: str) -> None:
    """Open the circuit breaker: the session is not started again until an operator starts it."""
    await conn.execute(SQL.trip_breaker, key.company_id, key.phone_index, reason)


async def mark_ready(conn: asyncpg.Connection, key: SessionKey, phone_number: str | None) -> None:
    """Note when the session was last ready (and as which number)."""
    await conn.execute(SQL.mark_ready, key.company_id, key.phone_index, phone_number)


async def pending_commands(conn: asyncpg.Connection) -> list[Command]:
    """The operator commands not carried out yet, oldest first."""
    rows = await conn.fetch(SQL.pending_commands)
    return [Command(r["id"], SessionKey(r["company_id"], r["phone_index"]), r["action"], dict(r["args"] or {}))
            for r in rows]


async def finish_command(conn: asyncpg.Connection, command_id: int, *, ok: bool, result: Mapping[str, object],
                         handled_by: str) -> None:
    """Record a command's outcome (``done`` or ``failed``) with its result and who carried it out."""
    await conn.execute(SQL.finish_command, command_id, "done" if ok else "failed", result, handled_by)


async def insert_command(conn: asyncpg.Connection, key: SessionKey, action: str, args: JsonObject,
                         requested_by: str) -> CommandRecord:
    """Queue an operator command for the session (the owning process picks it up).

    ``action`` is one of ``COMMAND_ACTIONS``; the table's constraint refuses anything else.
    """
    row = await conn.fetchrow(SQL.insert_command, key.company_id, key.phone_index, action, args, requested_by)
    assert row is not None
    return CommandRecord.from_row(row)


async def load_command(conn: asyncpg.Connection, key: SessionKey, command_id: int) -> CommandRecord | None:
    """One of the session's commands as it stands now (None: no such command for this session)."""
    return await CommandRecord.fetch_one(conn, SQL.load_command, command_id, key.company_id, key.phone_index)


async def keep_member(conn: asyncpg.Connection, member: Member, *, process_name: str, host: str,
                      ttl_seconds: float) -> None:
    """Keep this process's ``wwebjs_members`` row alive for another lease period."""
    await conn.execute(SQL.keep_member, member.holder, process_name, host, member.capacity, member.sessions,
                       member.draining, ttl_seconds)


async def live_members(conn: asyncpg.Connection) -> list[Member]:
    """The wwebjs processes alive now, oldest first."""
    return [Member(r["holder"], r["capacity"], r["sessions"], r["draining"])
            for r in await conn.fetch(SQL.live_members)]


async def leave_members(conn: asyncpg.Connection, holder: str) -> None:
    """This process stops sharing the sessions."""
    await conn.execute(SQL.leave_members, holder)
