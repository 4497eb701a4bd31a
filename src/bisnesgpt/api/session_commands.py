"""Session commands: what an operator asks of a WhatsApp-Web session, carried out by its owner.

The one path for session commands (the session API and the dashboard): the API never calls
into a wwebjs process. It records what the operator wants (``wwebjs_sessions.desired_state``),
queues the command in ``wwebjs_session_commands`` and wakes the wwebjs processes on
``process:message``; whichever process owns the session carries the command out and writes
its result, which the caller waits for up to ``wait`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from bisnesgpt.api.auth import Principal
from bisnesgpt.api.schemas.common import JsonObject, iso
from bisnesgpt.coordination.channels import PROCESS_MESSAGE, publish
from bisnesgpt.core.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, ValidationFailed
from bisnesgpt.engines.wwebjs import store as sessions_store
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import DriverError
from bisnesgpt.engines.wwebjs.fleet import SESSION_COMMAND_MESSAGE
from bisnesgpt.engines.wwebjs.store import CommandAction, CommandRecord, CommandState
from bisnesgpt.processes.context import ProcessContext

# The commands an operator sends by name (a pairing code is asked for with the phone number).
SessionAction = Literal["start", "stop", "restart", "logout"]
POLL_INTERVAL_S = 0.1


class PairingCodeRequest(BaseModel):
    """Body of a pairing-code request: link the session by typing a code on this number's phone."""

    model_config = ConfigDict(extra="forbid")

    phoneNumber: str = Field(min_length=5, max_length=32, examples=["+60123456789"],
                             description="the WhatsApp number to link, international format")


class CommandView(TypedDict):
    """A session command as the session API shows it (``url`` is where to poll it)."""

    id: int
    companyId: str
    phoneIndex: int
    action: CommandAction
    args: JsonObject
    state: CommandState
    result: JsonObject | None
    requestedBy: str | None
    handledBy: str | None
    createdAt: str | None
    handledAt: str | None
    url: str


@dataclass(frozen=True)
class SessionCommand(CommandRecord):
    """A session command as the session API and the dashboard answer it: where to poll it, why it failed."""

    @classmethod
    def of(cls, record: CommandRecord) -> SessionCommand:
        """The command the wwebjs store read."""
        return cls(**{f.name: getattr(record, f.name) for f in fields(record)})

    @property
    def url(self) -> str:
        """Where the session API answers this command's state."""
        return f"/api/sessions/{self.company_id}/{self.phone_index}/commands/{self.id}"

    @property
    def failure(self) -> str:
        """Why a failed command failed, as the operator is told."""
        error = (self.result or {}).get("error", "the command failed")
        return f"{self.action} failed: {error}"

    def as_json(self) -> CommandView:
        """The command for a JSON answer."""
        return {"id": self.id, "companyId": self.company_id, "phoneIndex": self.phone_index,
                "action": self.action, "args": self.args, "state": self.state, "result": self.result,
                "requestedBy": self.requested_by, "handledBy": self.handled_by,
                "createdAt": iso(self.created_at), "handledAt": iso(self.handled_at), "url": self.url}


def normalise_phone(raw: str) -> str:
    """The digits of a number to link (country code first); 422 unless it can be a phone number."""
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    try:
        parsed = phonenumbers.parse("+" + digits if not text.startswith("+") else text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed("phoneNumber is not a phone number", errors=[
            {"field": "phoneNumber", "message": str(exc)}]) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationFailed("phoneNumber is not a possible phone number", errors=[
            {"field": "phoneNumber", "message": "not a possible number (international format, e.g. +60123456789)"}])
    return f"{parsed.country_code}{parsed.national_number}"


def requester(principal: Principal) -> str:
    """Who asked for a session command, as recorded in ``wwebjs_session_commands.requested_by``."""
    return "admin" if principal.is_admin else f"key:{principal.key_id}"


async def load_command(ctx: ProcessContext, key: SessionKey, command_id: int) -> SessionCommand | None:
    """A command of this session by its id, or None."""
    async with ctx.db.connection() as conn:
        record = await sessions_store.load_command(conn, key, command_id)
    return SessionCommand.of(record) if record is not None else None


async def run_session_command(ctx: ProcessContext, key: SessionKey, action: CommandAction,
                              args: JsonObject, *, requested_by: str, wait: float) -> SessionCommand:
    """Record what the operator wants, queue the command, wake the wwebjs processes, wait.

    The command is returned as it stands after ``wait`` seconds at the most: still
    ``pending`` if its owner has not carried it out by then.
    """
    async with ctx.db.transaction() as conn:
        if action in ("start", "restart", "pairing_code"):
            await sessions_store.set_desired_state(conn, key, "running")
        elif action == "stop":
            await sessions_store.set_desired_state(conn, key, "stopped", "stopped by operator")
        command = SessionCommand.of(await sessions_store.insert_command(conn, key, action, args, requested_by))
    await publish(ctx.redis, PROCESS_MESSAGE, {
        "processName": ctx.process_name, "processId": ctx.pid, "messageType": SESSION_COMMAND_MESSAGE,
        "timestamp": int(time.time() * 1000),
        "data": {"commandId": command.id, "companyId": key.company_id, "phoneIndex": key.phone_index,
                 "action": action}}, namespace=ctx.namespace)
    deadline = time.monotonic() + wait
    while command.state == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
        command = await load_command(ctx, key, command.id) or command
    return command


# What the code of a failed command means to the caller; any other failure is the driver's 502.
Refusals = Mapping[str, type[NotFound] | type[Forbidden] | type[ValidationFailed] | type[Conflict]]
CHAT_REFUSALS: Refusals = {"BAD_CHAT_REQUEST": ValidationFailed}


async def owner_answer(ctx: ProcessContext, key: SessionKey, action: CommandAction, args: JsonObject, *,
                       principal: Principal, what: str, wait: float, refusals: Refusals = CHAT_REFUSALS) -> JsonObject:
    """Run a command the session's owner answers (a chat or group operation) and return its ``data``.

    Nobody carrying it out within ``wait`` withdraws it (503, so it never happens later
    unseen); a session that is not connected is a 409; a code in ``refusals`` its problem;
    any other failure the driver's 502.
    """
    command = await run_session_command(ctx, key, action, args, requested_by=requester(principal), wait=wait)
    if command.state == "pending":
        async with ctx.db.connection() as conn:
            await sessions_store.finish_command(conn, command.id, ok=False, handled_by="api", result={
                "error": "no wwebjs process carried it out in time"})
        raise ServiceUnavailable(f"no wwebjs process answered for phone {key.phone_index} within {wait:g}s: "
                                 "is its session running? (GET /api/sessions/{company}/{phone})")
    result = command.result or {}
    if command.state == "failed":
        code, error = str(result.get("code") or ""), str(result.get("error") or "the operation failed")
        if code == "SESSION_NOT_CONNECTED":
            raise Conflict(f"{what} failed: {error}: the phone's WhatsApp-Web session is not connected; pair it or "
                           "wait until it is ready (GET /api/sessions/{company}/{phone})", extra={"code": code})
        problem = refusals.get(code)
        if problem is not None:
            raise problem(f"{what} failed: {error}", extra={"code": code})
        raise DriverError(f"{what} failed: {error}")
    data = result.get("data")
    return data if isinstance(data, dict) else {}
