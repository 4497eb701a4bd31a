"""Operator commands for a session this process owns: start, restart, stop, logout, pairing code, group and
chat operations.

The API queues a command in ``wwebjs_session_commands``; the manager runs each one for a
session it holds the lease of, one at a time per session, and stores what it answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypedDict

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs import store
from bisnesgpt.engines.wwebjs.chats import run_chat_op
from bisnesgpt.engines.wwebjs.driver import DriverSession, SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, NotConnected
from bisnesgpt.engines.wwebjs.groups import run_group_op
from bisnesgpt.engines.wwebjs.session import ManagedSession
from bisnesgpt.engines.wwebjs.session_services import SessionConfig, SessionServices
from bisnesgpt.engines.wwebjs.status import SessionStatus

log = logging.getLogger(__name__)


class CommandResult(TypedDict, total=False):
    """What a session command answers (stored in ``wwebjs_session_commands.result``)."""

    status: SessionStatus
    note: str
    desiredState: Literal["stopped"]
    loggedOut: bool
    detail: str
    pairingCode: str
    phoneNumber: str
    error: str
    code: str
    data: JsonObject  # a group operation's answer


# A group operation waits this long for WhatsApp at the most (the API waits a little longer).
GROUP_OP_TIMEOUT_S = 20.0
# A group or chat operation: what the owner does with the session's driver for a command.
DriverOperation = Callable[[DriverSession, JsonObject], Awaitable[JsonObject]]
CommandHandler = Callable[[store.Command], Awaitable[CommandResult]]


class SessionCommands:
    """The command side of the session manager (mixed into ``SessionManager``, which owns the state)."""

    db: Database
    holder: str
    services: SessionServices
    config: SessionConfig
    sessions: dict[SessionKey, ManagedSession]
    _command_tasks: dict[SessionKey, asyncio.Task[None]]

    def poke(self) -> None:
        """Reconcile now (the manager's)."""
        raise NotImplementedError

    def _launch(self, key: SessionKey, *, pairing_phone: str | None = None) -> ManagedSession:
        raise NotImplementedError

    async def _run_command(self, command: store.Command) -> None:
        ok, result = True, CommandResult()
        try:
            result = await self._execute(command)
        except DriverError as exc:
            ok, result = False, {"error": exc.detail, "code": exc.code}
        except BisnesgptError as exc:
            ok, result = False, {"error": exc.detail}
        except TimeoutError:
            ok, result = False, {"error": "timed out"}
        except Exception as exc:
            log.exception("command %s failed", command.id)
            ok, result = False, {"error": f"internal error: {exc!r}"}
        finally:
            self._command_tasks.pop(command.key, None)
        try:
            async with self.db.connection() as conn:
                await store.finish_command(conn, command.id, ok=ok, result=result, handled_by=self.holder)
        except BisnesgptError as exc:
            log.warning("command %s result not stored: %s", command.id, exc.detail)
        await self.services.events.record("wwebjs_session_command", {
            "session": str(command.key), "action": command.action, "ok": ok,
            **{k: v for k, v in result.items() if k != "data"}})  # a group list can be long
        self.poke()

    async def _execute(self, command: store.Command) -> CommandResult:
        handlers: dict[str, CommandHandler] = {
            "start": self._start_command, "restart": self._restart_command, "stop": self._stop_command,
            "logout": self._logout_command, "pairing_code": self._pairing_command, "group": self._group_command,
            "chat": self._chat_command}
        handler = handlers.get(command.action)
        if handler is None:
            return {"error": f"unknown action {command.action!r}"}
        return await handler(command)

    async def _start_command(self, command: store.Command) -> CommandResult:
        session = self.sessions.get(command.key)
        if session is not None and session.running:
            session.wake()
            return {"status": session.status, "note": "already running; retrying now if it was waiting"}
        self._launch(command.key)
        return {"status": "initializing"}

    async def _restart_command(self, command: store.Command) -> CommandResult:
        session = self.sessions.get(command.key)
        if session is not None:
            await session.close()
        self._launch(command.key)
        return {"status": "initializing"}

    async def _stop_command(self, command: store.Command) -> CommandResult:
        session = self.sessions.pop(command.key, None)
        if session is not None:
            await session.close(final_status=("disconnected", {"reason": "stopped by operator"}))
        return {"status": "disconnected", "desiredState": "stopped"}

    async def _logout_command(self, command: store.Command) -> CommandResult:
        session = self.sessions.pop(command.key, None) or ManagedSession(command.key, self.services, self.config)
        how = await session.logout()
        return {"status": "disconnected", "loggedOut": True, "detail": how}

    async def _pairing_command(self, command: store.Command) -> CommandResult:
        phone = str(command.args.get("phoneNumber") or "")
        session = self.sessions.get(command.key)
        if session is None or not session.running:
            session = self._launch(command.key, pairing_phone=phone)
        code = await session.request_pairing_code(phone)
        return {"status": "pairing_code", "pairingCode": code, "phoneNumber": phone}

    async def _group_command(self, command: store.Command) -> CommandResult:
        return await self._driver_command(command, run_group_op)

    async def _chat_command(self, command: store.Command) -> CommandResult:
        return await self._driver_command(command, run_chat_op)

    async def _driver_command(self, command: store.Command, operation: DriverOperation) -> CommandResult:
        """Carry out a group or chat operation on the running session's driver; its answer as ``data``."""
        session = self.sessions.get(command.key)
        if session is None or not session.running:
            raise NotConnected(f"session {command.key} is not running; start it first")
        data = await asyncio.wait_for(operation(session.ready_driver(), command.args), GROUP_OP_TIMEOUT_S)
        return {"data": data}
