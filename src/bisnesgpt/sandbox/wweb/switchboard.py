"""What every part of the sandbox network shares: the live connection of each session, the
sessions' faults, delayed actions, the records, and the push of an inbound message.

``Network`` (``network.py``) is a switchboard with the parts that act on it: sessions and
pairing (``sessions.py``), message routing (``routing.py``), fault injection (``faults.py``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.wweb.config import NetworkConfig
from bisnesgpt.sandbox.wweb.connection import Connection
from bisnesgpt.sandbox.wweb.records import MessageRow, Records


class NetworkError(Exception):
    """A hello or an admin call the network refuses; ``status`` is the admin API's HTTP answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class FaultsView(TypedDict):
    """A session's faults as the admin API shows them (``hang``: seconds left, or ``until cleared``)."""

    hang: float | str | None
    flapRemaining: int
    stallRemaining: int
    driver: dict[str, JsonObject]


@dataclass
class Faults:
    """The faults a session is under: a network hang, flapping, stalls, and those the driver acts out."""

    hang_until: float = 0.0
    flap_remaining: int = 0
    flap_after_ms: int = 500
    # Connections that get stuck after authenticating: the network never says "ready".
    stall_remaining: int = 0
    driver: dict[str, JsonObject] = field(default_factory=dict)

    def hung(self) -> bool:
        """Whether the network reads and writes nothing for this session now."""
        return self.hang_until > time.monotonic()

    def describe(self) -> FaultsView:
        """The faults for the admin API."""
        hang: float | str | None = None
        if self.hung():
            hang = "until cleared" if math.isinf(self.hang_until) else round(self.hang_until - time.monotonic(), 2)
        return {"hang": hang, "flapRemaining": self.flap_remaining, "stallRemaining": self.stall_remaining,
                "driver": self.driver}


class Switchboard:
    """The network's shared state; the parts in ``sessions.py``, ``routing.py``, ``faults.py`` act on it."""

    def __init__(self, records: Records, config: NetworkConfig, media_dir: Path) -> None:
        self.records = records
        self.config = config
        self.media_dir = media_dir
        media_dir.mkdir(parents=True, exist_ok=True)
        self.live: dict[str, Connection] = {}
        self.faults: dict[str, Faults] = {}
        self._timers: set[asyncio.Task[None]] = set()

    def faults_for(self, session: str) -> Faults:
        """The session's faults (none yet: a fresh, fault-free record)."""
        return self.faults.setdefault(session, Faults())

    def hung(self, session: str) -> bool:
        """Whether the session's network hangs now."""
        return self.faults_for(session).hung()

    def later(self, delay_ms: float, coro: Coroutine[Any, Any, object]) -> None:
        """Run ``coro`` after ``delay_ms`` (dropped, never started, if the network shuts down first)."""
        async def _run() -> None:
            try:
                await asyncio.sleep(delay_ms / 1000)
            except asyncio.CancelledError:
                coro.close()
                raise
            await coro

        task = asyncio.create_task(_run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def cancel_timers(self) -> None:
        """Drop every delayed action (the network is shutting down)."""
        for task in list(self._timers):
            task.cancel()

    async def wait_unhung(self, session: str) -> None:
        """A hung network reads nothing: frames wait (like bytes in a socket buffer) until it recovers."""
        while self.hung(session):  # noqa: ASYNC110 - hangs end by time or by a clear
            await asyncio.sleep(0.05)

    def ready_connection(self, session: str) -> Connection | None:
        """The session's live connection if it is ready (the one that gets acks and messages)."""
        conn = self.live.get(session)
        return conn if conn is not None and conn.state == "ready" else None

    def flap(self, conn: Connection, faults: Faults) -> None:
        """One disconnect of a flapping session, ``flap_after_ms`` after it became ready."""
        faults.flap_remaining -= 1
        self.later(faults.flap_after_ms, conn.kick("disconnect", "sandbox fault: flapping connection"))

    async def push_inbound(self, conn: Connection, message: MessageRow) -> None:
        """Push a recorded inbound message to the client, counting the push."""
        frame: JsonObject = {"id": message["id"], "chat": message["chat"], "timestamp": message["first_at"],
                             "type": message["kind"], **message["body"]}
        if await conn.push({"type": "message", "message": frame}):
            self.records.count_push(message["session"], message["id"])
