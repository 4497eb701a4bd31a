"""``/api/v1/events/ws`` against a spawned api process: the webhooks' events, live, per tenant.

Real WebSocket clients (the ``websockets`` library) and a real webhook receiver: a client
gets its own company's events only, as the same JSON with the same ids its webhook gets;
filters by type and phone; resumes after a reconnect from an event id with nothing lost;
an operator key sees every company; bad keys and foreign companies are refused with
close codes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bisnesgpt.db.pool import Database
from tests.support.polling import eventually
from tests.support.webhooks import (
    ADMIN_KEY,
    Receiver,
    create_endpoint,
    emit_inbound,
    emit_session_status,
    new_company,
    receiver,
    spawn_api,
)

pytestmark = pytest.mark.e2e


class Client:
    """A WebSocket client collecting the events it receives."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.conn:
                self.events.append(json.loads(message))
        except ConnectionClosed:
            pass

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]

    async def close(self) -> None:
        await self.conn.close()
        await self.task


async def open_client(base: str, key: str, **query: str) -> Client:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    conn = await connect(f"{base.replace('http', 'ws')}/api/v1/events/ws?{params}",
                         additional_headers={"Authorization": f"Bearer {key}"})
    client = Client(conn)
    await asyncio.sleep(0.5)  # the feed's next poll sees the subscription (the events below come after it)
    return client


@pytest.fixture
def hooks() -> Any:
    with receiver() as server:
        yield server


@pytest.fixture
async def api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[str]:
    proc, base = spawn_api(tmp_path, database_url, redis_url, EVENT_STREAM_POLL_MS="100")
    try:
        yield base
    finally:
        proc.kill_tree()


async def test_each_tenant_gets_its_own_events_as_its_webhook_does(api: str, db: Database, hooks: Receiver) -> None:
    company_a, key_a = await new_company(db)
    company_b, key_b = await new_company(db)
    create_endpoint(api, key_a, hooks.url("/a"))
    client_a, client_b = await open_client(api, key_a), await open_client(api, key_b)
    operator = await open_client(api, ADMIN_KEY)
    try:
        mine = [(await emit_inbound(db, company_a, text=f"a{i}")).event_ids[0] for i in range(3)]
        theirs = (await emit_inbound(db, company_b, text="b")).event_ids[0]
        await eventually(lambda: len(client_a.events) >= 3 and len(client_b.events) >= 1
                         and len(operator.events) >= 4, timeout=30)
        await eventually(lambda: len(hooks.requests("/a")) >= 3, timeout=60)
        assert client_a.ids() == mine and client_b.ids() == [theirs]
        assert set(operator.ids()) == {*mine, theirs}
        by_webhook = {r.event_id: r.event for r in hooks.requests("/a")}
        for event in client_a.events:  # the same document, byte for byte the same JSON values
            assert event == by_webhook[event["id"]]
        assert all(e["company_id"] == company_a for e in client_a.events)
    finally:
        for client in (client_a, client_b, operator):
            await client.close()


async def test_filters_and_resume_after_a_reconnect(api: str, db: Database) -> None:
    company, key = await new_company(db)
    inbound_only = await open_client(api, key, types="message.inbound", phoneIndex="0")
    everything = await open_client(api, key)
    first = (await emit_inbound(db, company, text="first")).event_ids[0]
    await emit_session_status(db, company, status="qr")
    await emit_inbound(db, company, text="phone 1", phone_index=1)
    await eventually(lambda: len(everything.events) >= 3, timeout=30)
    assert inbound_only.ids() == [first]
    await inbound_only.close()
    last_seen = everything.ids()[-1]
    await everything.close()
    # Offline: events happen meanwhile; the reconnect replays them in order, then goes on live.
    missed = [(await emit_inbound(db, company, text=f"missed {i}")).event_ids[0] for i in range(5)]
    resumed = await open_client(api, key, since=last_seen)
    live = (await emit_inbound(db, company, text="live")).event_ids[0]
    await eventually(lambda: len(resumed.events) >= 6, timeout=30)
    assert resumed.ids() == [*missed, live]
    await resumed.close()


async def test_refusals_close_with_a_reason(api: str, db: Database) -> None:
    company_a, key_a = await new_company(db)
    company_b, _ = await new_company(db)
    event_b = (await emit_inbound(db, company_b)).event_ids[0]
    cases = [("bad-key", {}, 4401), (key_a, {"companyId": company_b}, 4404), (key_a, {"types": "nope"}, 4422),
             (key_a, {"since": event_b}, 4404)]
    for key, query, code in cases:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        async with connect(f"{api.replace('http', 'ws')}/api/v1/events/ws?{params}",
                           additional_headers={"Authorization": f"Bearer {key}"}) as conn:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(conn.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code, (query, closed.value)
            assert closed.value.rcvd.reason
    del company_a
