"""Outages through real HTTP: Redis stopped, PostgreSQL stopped, a config change on 2 APIs.

Each test owns the server it breaks (a throwaway Valkey / PostgreSQL in its tmp dir), so
nothing shared with other tests or helpers is ever stopped.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from bisnesgpt.db.migrate import migrate
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres
from bisnesgpt.infra.embedded_redis import EmbeddedRedis
from bisnesgpt.messaging.store import touch_inbound_session
from tests.support.meta import EmulatorProc
from tests.support.pipeline import ApiServer, RecordingEngine, Workers, seed_tenant
from tests.support.polling import eventually
from tests.support.procs import free_port

# The api's default DATABASE_CONNECT_TIMEOUT and the router cache TTL these tests set.
DATABASE_CONNECT_TIMEOUT_S = 5.0
ROUTER_CACHE_TTL_S = 300

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

CHAT = "60123456789@c.us"


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "valkey", port=free_port())
    server.ensure()
    try:
        yield server
    finally:
        server.stop()


async def test_sends_are_accepted_with_redis_down_and_enqueued_when_it_returns(
        tmp_path: Path, db: Database, database_url: str, own_redis: EmbeddedRedis) -> None:
    redis_url = own_redis.url(own_redis.requested_port)
    tenant = await seed_tenant(db, f"co-{uuid.uuid4().hex[:8]}", {0: "wwebjs", 1: "meta_direct"})
    path = f"/api/v2/messages/text/{tenant.company_id}/{CHAT}"
    server = ApiServer(tmp_path / "api", database_url, redis_url)
    jobs = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers, timeout=10) as client:
            before = await client.post(path, json={"message": "before", "ordered": False})
            assert before.status_code == 202
            assert await jobs.exists(f"bull:wwebjs-messages:{before.json()['messageId']}")

            own_redis.stop()
            accepted = []
            latencies = []
            for i in range(6):
                started = time.monotonic()
                response = await client.post(path, json={"message": f"during {i}", "phoneIndex": i % 2,
                                                                 "ordered": False})
                latencies.append(time.monotonic() - started)
                assert response.status_code == 202, response.text
                accepted.append(response.json())
            stored = await db.fetch("SELECT message_id, status FROM messages WHERE message_id = ANY($1::text[])",
                                    [a["messageId"] for a in accepted])
            assert sorted(r["status"] for r in stored) == ["queued"] * 6
            metrics = (await client.get("/metrics")).text
            deferred = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                           if line.startswith("bisnesgpt_enqueue_deferred_total{"))
            assert deferred == 6

            own_redis.ensure()  # same port, same data dir
            back = time.monotonic()
            keys = [f"bull:{a['queueName']}:{a['messageId']}" for a in accepted]

            async def all_enqueued() -> bool:
                try:
                    return bool(await jobs.exists(*keys) == len(keys))
                except (OSError, aioredis.RedisError):
                    return False

            await eventually(all_enqueued, timeout=30, interval=0.05, what="jobs enqueued after Redis returned")
            delay = time.monotonic() - back
            print(f"\nsend latency with Redis down: max {max(latencies) * 1000:.0f} ms; "
                  f"all {len(keys)} jobs in Redis {delay:.2f} s after it returned")
            assert delay <= 5.0, f"enqueued only {delay:.2f}s after Redis came back"

            # And they are delivered: the worker helper sends every one of them.
            engine = RecordingEngine()
            async with Workers(db, redis_url, engine):
                async def all_sent() -> bool:
                    count = await db.fetchval("SELECT count(*) FROM messages WHERE message_id = ANY($1::text[]) "
                                              "AND status = 'sent'", [a["messageId"] for a in accepted])
                    return bool(count == len(accepted))

                await eventually(all_sent, timeout=30, what="messages sent after the outage")
            expected = {before.json()["messageId"], *(a["messageId"] for a in accepted)}
            assert sorted(engine.sent) == sorted(expected)  # each once
    finally:
        await jobs.aclose()
        server.stop()


async def test_lost_jobs_are_redispatched_after_redis_loses_its_data(
        tmp_path: Path, db: Database, database_url: str, own_redis: EmbeddedRedis) -> None:
    redis_url = own_redis.url(own_redis.requested_port)
    tenant = await seed_tenant(db, f"co-{uuid.uuid4().hex[:8]}", {0: "360dialog"})
    server = ApiServer(tmp_path / "api", database_url, redis_url, OUTBOX_MIN_AGE="500")
    jobs = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers) as client:
            ids = [(await client.post(f"/api/v2/messages/text/{tenant.company_id}/{CHAT}",
                                      json={"message": f"m{i}", "ordered": False})).json()["messageId"]
                       for i in range(3)]
        # One of them was being sent when the data went away.
        await db.execute("UPDATE messages SET status = 'sending' WHERE message_id = $1", ids[0])
        await jobs.flushall()
        lost = time.monotonic()

        async def all_back() -> bool:
            return bool(await jobs.exists(*[f"bull:meta-messages:{i}" for i in ids]) == len(ids))

        await eventually(all_back, timeout=30, what="jobs re-dispatched")
        print(f"\nre-dispatched {len(ids)} lost jobs in {time.monotonic() - lost:.2f} s")

        async def recorded() -> bool:
            # The pass records its event right after the adds the check above already saw.
            return bool(await db.fetchval(
                "SELECT count(*) FROM process_events WHERE event_type = 'outbox_redispatch'"))

        await eventually(recorded, timeout=10, what="an outbox_redispatch event")
    finally:
        await jobs.aclose()
        server.stop()


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    server = EmbeddedPostgres(tmp_path / "pg" / "data", port=free_port())
    handle = server.ensure()
    try:
        await migrate(handle.url)
        yield server, handle.url
    finally:
        server.stop()


async def test_with_postgres_down_the_api_answers_503_at_once(
        tmp_path: Path, own_postgres: tuple[EmbeddedPostgres, str], redis_url: str) -> None:
    server_pg, url = own_postgres
    db = Database(url, max_size=2)
    await db.open()
    try:
        tenant = await seed_tenant(db, "acme", {0: "wwebjs"})
    finally:
        await db.close()
    path = f"/api/v2/messages/text/{tenant.company_id}/{CHAT}"
    api = ApiServer(tmp_path / "api", url, redis_url)
    try:
        await api.start()
        async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers, timeout=10) as client:
            for _ in range(3):  # warm: connections in the pool, routes cached
                assert (await client.post(path, json={"message": "warm"})).status_code == 202
            server_pg.stop()
            latencies = []
            for i in range(20):
                started = time.monotonic()
                response = await client.post(path, json={"message": f"down {i}"})
                latencies.append(time.monotonic() - started)
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"].endswith("/database-unavailable")
                assert response.headers["retry-after"] == "1"
            reads = await client.get("/api/v1/messages")
            assert reads.status_code == 503
            p50, worst = statistics.median(latencies), max(latencies)
            print(f"\n503 with PostgreSQL down: median {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms "
                  f"over {len(latencies)} sends")
            # At once: no send waited out the connect timeout on a server that is gone.
            assert worst < DATABASE_CONNECT_TIMEOUT_S, f"slowest 503 took {worst * 1000:.0f} ms"

            server_pg.ensure()

            async def accepts() -> bool:
                return (await client.post(path, json={"message": "after"})).status_code == 202

            back = time.monotonic()
            await eventually(accepts, timeout=60, interval=0.2, what="sends accepted after PostgreSQL returned")
            print(f"accepting again {time.monotonic() - back:.2f} s after PostgreSQL was back")
    finally:
        api.stop()


async def test_a_config_change_reroutes_the_next_message_on_every_api_instance(
        tmp_path: Path, db: Database, database_url: str, redis_url: str) -> None:
    tenant = await seed_tenant(db, f"co-{uuid.uuid4().hex[:8]}", {0: "wwebjs"})
    cid = tenant.company_id
    async with db.connection() as conn:  # the contact wrote: Meta's 24-hour window is open
        await touch_inbound_session(conn, cid, 0, CHAT.split("@", maxsplit=1)[0], datetime.now(UTC))
    # A long TTL: only the pub/sub invalidation can explain a reroute before it expires.
    # The connect below is proven at the Cloud API first: the emulator plays it (any token reads 9001).
    emulator = EmulatorProc(tmp_path, app_secret=None, phones=["9001"], extra=["--waba-id", "9002"])
    instances = [ApiServer(tmp_path / f"api{i}", database_url, redis_url, instance_id=i, name=f"api-{i}",
                           ROUTER_CACHE_TTL=str(ROUTER_CACHE_TTL_S), META_GRAPH_URL=emulator.url)
                 for i in range(2)]
    try:
        await asyncio.gather(*(instance.start() for instance in instances))
        clients = [httpx.AsyncClient(base_url=i.url, headers=tenant.headers) for i in instances]

        async def queue_on(client: httpx.AsyncClient) -> str:
            response = await client.post(f"/api/v2/messages/text/{cid}/{CHAT}", json={"message": "probe"})
            return str(response.json().get("queueName") if response.status_code == 202 else response.status_code)

        try:
            for client in clients:  # both caches hold "wwebjs"
                assert await queue_on(client) == "wwebjs-messages"
                assert await queue_on(client) == "wwebjs-messages"

            async def reroute(change: object, expected: str) -> list[float]:
                changed_at = time.monotonic()
                await change  # type: ignore[misc]
                timings = []
                for client in clients:
                    async def moved(client: httpx.AsyncClient = client) -> bool:
                        return await queue_on(client) == expected

                    await eventually(moved, timeout=10, interval=0.01, what=f"{expected} on {client.base_url}")
                    timings.append(time.monotonic() - changed_at)
                return timings

            connect = clients[1].post("/api/whatsapp/meta-direct/connect", json={
                "companyId": cid, "phoneIndex": 0, "phoneNumberId": "9001", "wabaId": "9002",
                "accessToken": "EAAG-secret-token"})
            to_meta = await reroute(connect, "meta-messages")
            removal = clients[0].delete(f"/api/whatsapp/config/{cid}/0")
            to_none = await reroute(removal, "404")
            print(f"\nreroute after config change: to meta {[f'{t * 1000:.0f} ms' for t in to_meta]}, "
                  f"after delete {[f'{t * 1000:.0f} ms' for t in to_none]}")
            assert max(to_meta + to_none) < ROUTER_CACHE_TTL_S
        finally:
            for client in clients:
                await client.aclose()
    finally:
        for instance in instances:
            instance.stop()
        emulator.close()
