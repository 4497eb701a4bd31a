"""One client socket of the sandbox network: its state, its pairing, and how frames reach it.

While the session's network hangs (a fault), frames wait in the connection's backlog, as
bytes would in a stuck socket, and go out once it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.wweb.protocol import ServerFrame

log = logging.getLogger(__name__)

ConnectionState = Literal["new", "pairing", "authenticated", "ready", "closed"]


class Socket(Protocol):
    """The part of a WebSocket the network uses (Starlette's in the server)."""

    async def send_json(self, data: Any) -> None:
        """Send one frame."""

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the socket."""


@dataclass
class Pairing:
    """A connection waiting to be linked: the QR it shows now, or the pairing code it asked for."""

    qr: str | None = None
    qr_count: int = 0
    code: str | None = None
    phone: str | None = None


class Connection:
    """A client socket, from ``welcome`` to close; ``hung(session)`` says whether frames must wait."""

    def __init__(self, socket: Socket, connection_id: int, hung: Callable[[str], bool]) -> None:
        self.socket = socket
        self.id = connection_id
        self._hung = hung
        self.session: str | None = None
        self.client: JsonObject = {}
        self.state: ConnectionState = "new"
        self.pairing: Pairing | None = None
        self.phone: str | None = None
        self.push_name: str | None = None
        self.close_reason: str | None = None
        self.backlog: list[ServerFrame] = []
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        """Until the network or the client closed it."""
        return self.state != "closed"

    async def push(self, frame: ServerFrame, *, force: bool = False) -> bool:
        """Send a frame; while the session's network hangs, hold it until the hang ends."""
        if not self.open:
            return False
        if not force and self.session and self._hung(self.session):
            self.backlog.append(frame)
            return True
        async with self._lock:
            try:
                await self.socket.send_json(frame)
                return True
            except Exception as exc:  # the peer went away mid-send
                log.debug("connection %d: send failed: %r", self.id, exc)
                return False

    async def flush(self) -> None:
        """Send what waited during a hang."""
        backlog, self.backlog = self.backlog, []
        for frame in backlog:
            await self.push(frame)

    async def kick(self, frame_type: Literal["disconnect", "logged_out"], reason: str) -> None:
        """Tell the client why, then close (disconnect / logged_out / replaced)."""
        if not self.open:
            return
        await self.push({"type": frame_type, "reason": reason}, force=True)
        self.close_reason = reason
        self.state = "closed"
        with contextlib.suppress(Exception):
            await self.socket.close(code=1000)
