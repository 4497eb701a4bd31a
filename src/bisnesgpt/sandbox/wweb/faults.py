"""Faults injected into a session (``POST /admin/sessions/…/faults``).

Network-side: ``disconnect``, ``logout`` (credentials voided), ``hang`` (nothing read or
written for ``seconds``, or until cleared), ``flap`` (``count`` disconnects ``afterMs`` after
each ready), ``stall`` (``count`` connections never get ready). Acted out inside the driver:
``slow_sends``, ``memory_growth`` (remembered and pushed on every ready) and ``freeze``
(pushed once). ``clear`` ends them all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypedDict

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.jsonvalues import as_float, as_int
from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.connection import Connection
from bisnesgpt.sandbox.wweb.switchboard import Faults, FaultsView, NetworkError, Switchboard

DRIVER_FAULTS = ("slow_sends", "memory_growth", "freeze")
FAULT_TYPES = ("disconnect", "logout", "hang", "flap", "stall", *DRIVER_FAULTS, "clear")

FaultAction = Callable[[str, Connection | None, JsonObject], Awaitable[None]]


class InjectedFault(TypedDict):
    """The answer of a fault injection: the session's faults afterwards."""

    session: str
    fault: str
    connected: bool
    faults: FaultsView


class FaultInjector:
    """Puts sessions under faults and takes them out again."""

    def __init__(self, board: Switchboard) -> None:
        self.board = board
        self._actions: dict[str, FaultAction] = {
            "disconnect": self._disconnect, "logout": self._logout, "hang": self._hang, "flap": self._flap,
            "stall": self._stall, "clear": self._clear,
        }

    async def fault(self, session: str, body: JsonObject) -> InjectedFault:
        """Inject the fault ``body["type"]`` with its parameters (``seconds``, ``count``, ``afterMs``, …)."""
        kind = str(body.get("type") or "")
        if kind not in FAULT_TYPES:
            raise NetworkError(400, f"unknown fault {kind!r}; one of {', '.join(FAULT_TYPES)}")
        conn = self.board.live.get(session)
        if kind in DRIVER_FAULTS:
            await self._driver_fault(session, conn, kind, {k: v for k, v in body.items() if k != "type"})
        else:
            await self._actions[kind](session, conn, body)
        return {"session": session, "fault": kind, "connected": conn is not None and conn.open,
                "faults": self.board.faults_for(session).describe()}

    async def _disconnect(self, _session: str, conn: Connection | None, body: JsonObject) -> None:
        if conn is not None:
            await conn.kick("disconnect", str(body.get("reason") or "sandbox fault: disconnect"))

    async def _logout(self, session: str, conn: Connection | None, body: JsonObject) -> None:
        reason = str(body.get("reason") or "logged out from the phone (sandbox fault)")
        self.board.records.log_out_device(session, reason)
        if conn is not None:
            await conn.kick("logged_out", reason)

    async def _hang(self, session: str, _conn: Connection | None, body: JsonObject) -> None:
        seconds = as_float(body.get("seconds") or 0)
        self.board.faults_for(session).hang_until = time.monotonic() + seconds if seconds > 0 else math.inf
        if seconds > 0:
            self.board.later(seconds * 1000 + 10, self._recover(session))

    async def _recover(self, session: str) -> None:
        conn = self.board.live.get(session)
        if conn is not None and not self.board.hung(session):
            await conn.flush()

    async def _flap(self, session: str, conn: Connection | None, body: JsonObject) -> None:
        faults = self.board.faults_for(session)
        faults.flap_remaining = as_int(body.get("count") or 10)
        faults.flap_after_ms = as_int(body.get("afterMs") or 300)
        if conn is not None and conn.state == "ready" and faults.flap_remaining > 0:
            self.board.flap(conn, faults)

    async def _stall(self, session: str, _conn: Connection | None, body: JsonObject) -> None:
        self.board.faults_for(session).stall_remaining = as_int(body.get("count") or 1)

    async def _clear(self, session: str, conn: Connection | None, _body: JsonObject) -> None:
        self.board.faults[session] = Faults()
        if conn is not None:
            await conn.flush()
            await conn.push({"type": "fault", "fault": "clear"})

    async def _driver_fault(self, session: str, conn: Connection | None, kind: str, params: JsonObject) -> None:
        """Acted out inside the client: remembered (except freeze) and pushed on every ready."""
        if kind != "freeze":
            self.board.faults_for(session).driver[kind] = params
        if conn is not None and conn.state == "ready":
            await conn.push(p.fault_frame(kind, params))
