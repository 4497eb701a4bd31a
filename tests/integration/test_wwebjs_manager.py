"""The session manager in-process, against real PostgreSQL and Redis, with a scripted driver.

The driver here stands in for WhatsApp itself (the edge); what is under test is the
manager: bounded, staggered starts, and letting go of sessions whose lease it cannot renew.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from bisnesgpt.config import load_settings
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.driver import OutgoingMessage, SentMessage, SessionKey
from bisnesgpt.engines.wwebjs.driver_events import Authenticated, DeliveryAck, EventSink, InboundMessage, QrCode, Ready
from bisnesgpt.engines.wwebjs.manager import SessionManager
from bisnesgpt.engines.wwebjs.store import AuthStore
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.infra.redis import redis_client
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


@dataclass
class ScriptedDriver:
    """Sessions take ``connect_seconds`` to connect, then show a QR (or resume when paired)."""

    connect_seconds: float = 0.3
    name: str = "scripted"
    starts: list[tuple[str, float]] = field(default_factory=list)
    connecting: int = 0
    max_connecting: int = 0
    stopped: list[str] = field(default_factory=list)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def session(self, key: SessionKey, sink: EventSink, auth_state: dict[str, Any] | None) -> ScriptedSession:
        return ScriptedSession(self, key, sink, auth_state)


class ScriptedSession:
    def __init__(self, driver: ScriptedDriver, key: SessionKey, sink: EventSink,
                 auth_state: dict[str, Any] | None) -> None:
        self.driver, self.key, self.sink, self.auth_state = driver, key, sink, auth_state
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, pairing_phone: str | None = None) -> None:
        self.driver.starts.append((str(self.key), time.monotonic()))
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        self.driver.connecting += 1
        self.driver.max_connecting = max(self.driver.max_connecting, self.driver.connecting)
        try:
            await asyncio.sleep(self.driver.connect_seconds)
        finally:
            self.driver.connecting -= 1
        if self.auth_state:
            self.sink(Authenticated(self.auth_state))
            self.sink(Ready("60123"))
        else:
            self.sink(QrCode(f"2@{self.key}"))

    async def request_pairing_code(self, phone_number: str) -> str:
        return "ABCD-EFGH"

    async def send(self, message: OutgoingMessage) -> SentMessage:
        return SentMessage("3EB0", time.time())

    async def logout(self) -> None:
        return None

    async def stop(self) -> None:
        self.driver.stopped.append(str(self.key))
        if self._task is not None:
            self._task.cancel()


async def _noop_inbound(_key: SessionKey, _message: InboundMessage) -> bool:
    return True


async def _noop_ack(_key: SessionKey, _ack: DeliveryAck) -> bool:
    return True


def manager_for(db: Database, redis_url: str, driver: ScriptedDriver, **settings: Any) -> SessionManager:
    config = load_settings(**{"wwebjs_reconcile_interval_ms": 200, "wwebjs_lease_ttl_seconds": 2, **settings})
    coordinator = Coordinator(redis_url, namespace="test", process_name="wwebjs", role="wwebjs", host="test-host",
                              peers={}, on_shutdown=lambda _reason: None)
    return SessionManager(config, db, redis_client(redis_url), coordinator, driver,  # type: ignore[arg-type]
                          AuthStore(SecretBox(b"k" * 32), driver.name), EventRecorder(db, "wwebjs"),
                          process_name="wwebjs", holder="wwebjs@test:1:abcdef", pid=1, namespace="test",
                          on_inbound=_noop_inbound, on_ack=_noop_ack)


async def test_starts_are_bounded_and_staggered(db: Database, redis_url: str) -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ('many', 'Many')")
    await db.execute("INSERT INTO phone_configs (company_id, phone_index) "
                     "SELECT 'many', g FROM generate_series(0, 7) g")
    driver = ScriptedDriver(connect_seconds=0.4)
    # A lease that outlives a busy machine's late renewals: a lost lease would (rightly) keep the
    # stop from writing "disconnected", and leases are not what this test is about.
    manager = manager_for(db, redis_url, driver, wwebjs_start_concurrency=2, wwebjs_start_stagger_ms=100,
                          wwebjs_lease_ttl_seconds=20)
    # The stagger is between launches; the driver's own start times add each task's
    # scheduling delay (tens of ms on a loaded machine), so the launches are what is timed.
    launches: list[float] = []
    launch = manager._launch

    def timed_launch(key: Any, **kwargs: Any) -> Any:
        launches.append(time.monotonic())
        return launch(key, **kwargs)

    manager._launch = timed_launch  # type: ignore[method-assign]
    await manager.start()
    try:
        await eventually(lambda: sum(1 for s in manager.sessions.values() if s.status == "qr") == 8)
    finally:
        await manager.stop()
    assert driver.max_connecting <= 2
    assert len(driver.starts) == 8 and len(launches) == 8
    assert all(b - a >= 0.099 for a, b in itertools.pairwise(launches)), launches
    rows = await db.fetch("SELECT status FROM phone_status WHERE company_id = 'many'")
    assert [r["status"] for r in rows] == ["disconnected"] * 8  # the manager's stop says so


async def test_a_session_whose_lease_cannot_be_renewed_is_let_go(db: Database, redis_url: str) -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ('solo', 'Solo')")
    await db.execute("INSERT INTO phone_configs (company_id, phone_index) VALUES ('solo', 0)")
    driver = ScriptedDriver(connect_seconds=0.05)
    manager = manager_for(db, redis_url, driver)
    await manager.start()
    key = SessionKey("solo", 0)
    try:
        await eventually(lambda: key in manager.sessions and manager.sessions[key].status == "qr")
        await db.close()  # PostgreSQL unreachable from this process: no lease renewals
        started = time.monotonic()
        await eventually(lambda: key not in manager.sessions, timeout=10)
        # Let go before the lease (2 s) could expire for anyone else.
        assert time.monotonic() - started < 2.0
        assert driver.stopped == ["solo:0"]
        await db.open()  # back: the session is owned and started again
        await eventually(lambda: key in manager.sessions and manager.sessions[key].status == "qr")
    finally:
        await manager.stop()
