"""The neonize driver in-process, against real PostgreSQL, up to the network boundary."""

from __future__ import annotations

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import DriverConnectError
from bisnesgpt.engines.wwebjs.driver_events import SessionEvent
from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeDriver, store_dsn
from bisnesgpt.engines.wwebjs.media import MediaFetcher

pytestmark = pytest.mark.integration

COUNT_CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"


def test_store_dsn_selects_the_schema_for_lib_pq() -> None:
    dsn = store_dsn("postgresql://u:p@db:5432/app?connect_timeout=5", "whatsmeow", "disable", "attempt-1")
    assert dsn.startswith("postgres://u:p@db:5432/app?")  # neonize picks PostgreSQL by the "postgres" prefix
    assert "search_path=whatsmeow" in dsn and "sslmode=disable" in dsn and "connect_timeout=5" in dsn
    assert "application_name=attempt-1" in dsn
    assert "sslmode=require" in store_dsn("postgresql://db/app?sslmode=require", "s", "disable")


async def test_connect_failure_is_readable_and_leaves_no_connection_behind(db: Database) -> None:
    driver = NeonizeDriver(db, db.dsn, schema="wa_test", sslmode="disable", media=MediaFetcher(1 << 20, 5))
    await driver.open()
    events: list[SessionEvent] = []
    baseline = await db.fetchval(COUNT_CONNECTIONS)
    outcomes = []
    for _attempt in range(6):
        session = driver.session(SessionKey("neo", 0), events.append, None)
        try:
            await session.start()
            outcomes.append("connected")  # only where WhatsApp is reachable
        except DriverConnectError as exc:
            outcomes.append(exc.detail)
        await session.stop()
    tables = {r["table_name"] for r in await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'wa_test'")}
    assert {"whatsmeow_device", "whatsmeow_sessions", "whatsmeow_version"} <= tables
    if "connected" not in outcomes:
        assert all("whatsapp" in o.lower() for o in outcomes), outcomes
    # Each attempt's database handle is closed: no PostgreSQL connection leaks per retry.
    assert await db.fetchval(COUNT_CONNECTIONS) <= baseline + 1
