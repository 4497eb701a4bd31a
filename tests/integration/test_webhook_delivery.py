"""Webhook outbox and delivery worker, in-process, over real PostgreSQL and a real HTTP receiver.

(The "Done when" scenarios with spawned processes are in tests/e2e/test_webhooks_e2e.py.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bisnesgpt.config import Settings, load_settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.messaging.events import MESSAGE_INBOUND, SESSION_STATUS, record_tenant_event
from bisnesgpt.webhooks.service import WebhookService
from bisnesgpt.webhooks.signing import verify_signature
from bisnesgpt.webhooks.urls import IPAddress
from bisnesgpt.webhooks.worker import DeliveryWorker
from tests.support.webhooks import (
    ENCRYPTION_KEY,
    Receiver,
    emit_inbound,
    emit_message_statuses,
    emit_session_status,
    new_company,
    receiver,
)

pytestmark = pytest.mark.integration

FAST = {
    "webhook_allow_private_destinations": True, "webhook_private_response_excerpts": True,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_max_delay_seconds": 0.2, "webhook_poll_interval_seconds": 0.5,
}


def make_settings(**overrides: Any) -> Settings:
    return load_settings(encryption_key=ENCRYPTION_KEY, **{**FAST, **overrides})


class SwitchableResolver:
    """A DNS stand-in: the name resolves to whatever the test says right now."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(self.address)]


WorkerFactory = Callable[..., Awaitable[DeliveryWorker]]


@pytest.fixture
async def start_worker(db: Database, database_url: str) -> AsyncIterator[WorkerFactory]:
    started: list[DeliveryWorker] = []

    async def factory(holder: str = "test-worker", resolver: Any = None, **overrides: Any) -> DeliveryWorker:
        worker = DeliveryWorker(db=db, database_url=database_url, box=SecretBox.from_hex(ENCRYPTION_KEY),
                                settings=make_settings(**overrides), holder=holder,
                                events=EventRecorder(db, "test-webhooks"), resolver=resolver)
        await worker.start()
        started.append(worker)
        return worker

    yield factory
    for worker in started:
        await worker.stop()


@pytest.fixture
def service(db: Database) -> WebhookService:
    return WebhookService(db, SecretBox.from_hex(ENCRYPTION_KEY), make_settings())


@pytest.fixture
def hooks() -> Any:
    with receiver() as server:
        yield server


async def delivery_rows(db: Database, endpoint_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id", endpoint_id)
    return [dict(r) for r in rows]


async def wait_rows(db: Database, endpoint_id: str, predicate: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 20) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await delivery_rows(db, endpoint_id)
        if predicate(rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"delivery rows never matched: {rows}")
        await asyncio.sleep(0.05)


async def wait_received(server: Receiver, count: int, path: str | None = None, timeout: float = 20) -> None:
    await asyncio.to_thread(server.wait_for, lambda r: len(r.requests(path)) >= count, timeout,
                            f"{count} request(s) on {path or 'any path'}")


async def test_deliveries_commit_and_roll_back_with_the_event(db: Database, service: WebhookService) -> None:
    acme, _ = await new_company(db)
    other, _ = await new_company(db)
    every = (await service.create(acme, url="https://hooks.example.com/all")).endpoint
    sessions = (await service.create(acme, url="https://hooks.example.com/s", events=[SESSION_STATUS])).endpoint
    paused = (await service.create(acme, url="https://hooks.example.com/p", enabled=False)).endpoint
    elsewhere = (await service.create(other, url="https://hooks.example.com/o")).endpoint

    inbound = await emit_inbound(db, acme)
    session = await emit_session_status(db, acme)
    async def failing_change() -> None:
        async with db.transaction() as conn:
            await record_tenant_event(conn, company_id=acme, phone_index=0, type=MESSAGE_INBOUND, data={"x": 1})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()

    assert [r["event_id"] for r in await delivery_rows(db, every.id)] == inbound.event_ids + session.event_ids
    assert [r["event_id"] for r in await delivery_rows(db, sessions.id)] == session.event_ids
    assert await delivery_rows(db, paused.id) == []
    assert await delivery_rows(db, elsewhere.id) == []
    assert await db.fetchval("SELECT count(*) FROM tenant_events WHERE company_id = $1", acme) == 2
    assert {r["status"] for r in await delivery_rows(db, every.id)} == {"pending"}


async def test_signed_delivery_with_headers_raw_and_rotation(db: Database, service: WebhookService,
                                                             start_worker: WorkerFactory, hooks: Receiver) -> None:
    acme, _ = await new_company(db)
    created = await service.create(acme, url=hooks.url("/plain"), headers={"Authorization": "Bearer token-1"})
    with_raw = await service.create(acme, url=hooks.url("/raw"), include_raw=True, events=[MESSAGE_INBOUND])
    await start_worker()

    inbound = await emit_inbound(db, acme, text="hi there", raw={"original": {"text": "hi there"}})
    await wait_received(hooks, 1, "/plain")
    await wait_received(hooks, 1, "/raw")
    plain = hooks.requests("/plain")[0]
    assert plain.event_id == inbound.event_ids[0]
    assert plain.headers["authorization"] == "Bearer token-1"
    assert plain.headers["content-type"] == "application/json"
    assert plain.headers["x-bisnesgpt-event-type"] == "message.inbound"
    assert plain.headers["x-bisnesgpt-attempt"] == "1"
    assert plain.headers["x-bisnesgpt-signature"].count("v1=") == 1
    assert verify_signature(created.secret, plain.body, plain.headers["x-bisnesgpt-signature"])
    assert not verify_signature(with_raw.secret, plain.body, plain.headers["x-bisnesgpt-signature"])
    event = plain.event
    assert set(event) == {"id", "type", "created_at", "company_id", "phone_index", "data"}
    assert (event["id"], event["type"], event["company_id"], event["phone_index"]) == (
        inbound.event_ids[0], "message.inbound", acme, 0)
    assert event["data"]["text"] == "hi there" and "raw" not in event["data"]
    raw = hooks.requests("/raw")[0]
    assert raw.event["data"]["raw"] == {"original": {"text": "hi there"}}
    assert verify_signature(with_raw.secret, raw.body, raw.headers["x-bisnesgpt-signature"])
    rows = await wait_rows(db, created.endpoint.id, lambda rs: rs[0]["status"] == "delivered")
    assert rows[0]["attempts"] == 1 and rows[0]["last_status_code"] == 200
    assert rows[0]["last_response_excerpt"] == '{"ok":true}'

    # Rotation with overlap: both secrets sign, new first; after an overlap of 0 only the new one.
    rotated = await service.rotate_secret(created.endpoint.id, acme, overlap_seconds=3600)
    await emit_session_status(db, acme)
    await wait_received(hooks, 2, "/plain")
    header = hooks.requests("/plain")[1].headers["x-bisnesgpt-signature"]
    body = hooks.requests("/plain")[1].body
    assert header.count("v1=") == 2
    assert verify_signature(rotated.secret, body, header) and verify_signature(created.secret, body, header)
    again = await service.rotate_secret(created.endpoint.id, acme, overlap_seconds=0)
    await emit_session_status(db, acme)
    await wait_received(hooks, 3, "/plain")
    third = hooks.requests("/plain")[2]
    assert third.headers["x-bisnesgpt-signature"].count("v1=") == 1
    assert verify_signature(again.secret, third.body, third.headers["x-bisnesgpt-signature"])
    assert not verify_signature(rotated.secret, third.body, third.headers["x-bisnesgpt-signature"])
    stored = await db.fetchval("SELECT secret_encrypted FROM webhook_endpoints WHERE id = $1", created.endpoint.id)
    assert again.secret not in stored and stored.startswith("v2:")  # encrypted at rest


async def test_status_events_from_real_transitions_are_delivered(db: Database, service: WebhookService,
                                                                 start_worker: WorkerFactory,
                                                                 hooks: Receiver) -> None:
    acme, _ = await new_company(db)
    created = await service.create(acme, url=hooks.url("/status"), events=["message.status"])
    await start_worker()
    emitted = await emit_message_statuses(db, acme, ("sending", "sent", "delivered", "read"))
    await wait_received(hooks, 4, "/status")
    got = {r.event_id: r.event for r in hooks.requests("/status")}
    assert set(got) == set(emitted.event_ids)
    assert sorted(e["data"]["status"] for e in got.values()) == ["delivered", "queued", "read", "sent"]
    for request in hooks.requests("/status"):
        assert verify_signature(created.secret, request.body, request.headers["x-bisnesgpt-signature"])


async def test_dead_letter_keeps_last_response_then_replay_and_retry(db: Database, service: WebhookService,
                                                                     start_worker: WorkerFactory,
                                                                     hooks: Receiver) -> None:
    acme, _ = await new_company(db)
    created = await service.create(acme, url=hooks.url("/down"))
    hooks.set("/down", status=503)
    await start_worker(webhook_retry_horizon_seconds=1.0)
    before = await db.fetchval("SELECT now()")
    emitted = await emit_inbound(db, acme)
    rows = await wait_rows(db, created.endpoint.id, lambda rs: rs and rs[0]["status"] == "dead")
    dead = rows[0]
    assert dead["attempts"] >= 3 and dead["last_status_code"] == 503
    assert dead["last_error"] == "HTTP 503" and "receiver says no" in dead["last_response_excerpt"]
    assert dead["dead_at"] is not None
    attempts_seen = len(hooks.requests("/down"))
    assert attempts_seen == dead["attempts"]

    hooks.set("/down", status=200)
    result = await service.replay(created.endpoint.id, acme, since=before)
    assert result.replayed == 1
    rows = await wait_rows(db, created.endpoint.id, lambda rs: len(rs) == 2 and rs[1]["status"] == "delivered")
    assert rows[1]["origin"] == "replay" and rows[1]["event_id"] == emitted.event_ids[0]
    assert hooks.event_ids("/down", ok_only=True) == emitted.event_ids

    # A manual retry of the dead row delivers the same event once more.
    retried = await service.retry(created.endpoint.id, dead["id"], acme)
    assert retried.status == "pending" and retried.attempts == 0
    rows = await wait_rows(db, created.endpoint.id, lambda rs: rs[0]["status"] == "delivered")
    assert hooks.event_ids("/down", ok_only=True) == emitted.event_ids * 2


async def test_private_destination_is_checked_at_delivery_time(db: Database, start_worker: WorkerFactory,
                                                               hooks: Receiver) -> None:
    """DNS rebinding: public when saved, loopback when delivering -> refused, nothing sent."""
    resolver = SwitchableResolver("93.184.216.34")
    strict = WebhookService(db, SecretBox.from_hex(ENCRYPTION_KEY),
                            make_settings(webhook_allow_private_destinations=False), resolver=resolver)
    acme, _ = await new_company(db)
    url = f"http://rebind.example.test:{hooks.port}/rebind"
    created = await strict.create(acme, url=url)
    resolver.address = "127.0.0.1"
    await start_worker(resolver=resolver, webhook_allow_private_destinations=False)
    await emit_inbound(db, acme)
    rows = await wait_rows(db, created.endpoint.id, lambda rs: rs and rs[0]["attempts"] >= 1
                           and rs[0]["status"] == "retrying")
    assert "destination refused" in rows[0]["last_error"]
    assert "rebind.example.test resolves to 127.0.0.1, a loopback address" in rows[0]["last_error"]
    assert hooks.requests() == []


async def test_redirects_timeouts_and_capped_bodies(db: Database, service: WebhookService,
                                                    start_worker: WorkerFactory, hooks: Receiver) -> None:
    acme, _ = await new_company(db)
    redirect = await service.create(acme, url=hooks.url("/redirect"))
    slow = await service.create(acme, url=hooks.url("/slow"))
    big = await service.create(acme, url=hooks.url("/big"))
    hooks.set("/redirect", status=302)
    hooks.set("/slow", delay=3.0)
    hooks.set("/big", body=b"x" * 100_000)
    await start_worker(webhook_timeout_seconds=1.0, webhook_response_max_bytes=64,
                       webhook_retry_base_seconds=30, webhook_retry_max_delay_seconds=30)
    await emit_inbound(db, acme)
    redirected = await wait_rows(db, redirect.endpoint.id, lambda rs: rs[0]["status"] == "retrying")
    assert redirected[0]["last_status_code"] == 302 and "redirects are not followed" in redirected[0]["last_error"]
    assert len(hooks.requests("/redirect")) == 1
    timed_out = await wait_rows(db, slow.endpoint.id, lambda rs: rs[0]["status"] == "retrying")
    assert timed_out[0]["last_error"] == "timed out after 1s" and timed_out[0]["last_status_code"] is None
    capped = await wait_rows(db, big.endpoint.id, lambda rs: rs[0]["status"] == "delivered")
    assert capped[0]["last_response_excerpt"] == "x" * 64


async def test_two_workers_share_a_backlog_within_the_endpoint_bound(db: Database, service: WebhookService,
                                                                     start_worker: WorkerFactory,
                                                                     hooks: Receiver) -> None:
    acme, _ = await new_company(db)
    created = await service.create(acme, url=hooks.url("/bounded"))
    hooks.set("/bounded", delay=0.02)
    emitted: list[str] = []
    for n in range(80):
        emitted += (await emit_inbound(db, acme, text=f"m{n}")).event_ids

    in_flight = {"now": 0, "max": 0}

    for holder in ("worker-a", "worker-b", "worker-c"):
        await start_worker(holder=holder, webhook_endpoint_concurrency=3)

    async def sample() -> None:
        while True:
            behaviour = hooks.behaviour("/bounded")
            with behaviour.lock:
                in_flight["now"] = behaviour.served - behaviour.completed
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        rows = await wait_rows(db, created.endpoint.id, lambda rs: all(r["status"] == "delivered" for r in rs),
                               timeout=60)
    finally:
        sampler.cancel()
    assert sorted(hooks.event_ids("/bounded")) == sorted(emitted)  # each exactly once
    assert {r["locked_by"] for r in rows} == {None}
    assert {r["attempts"] for r in rows} == {1}
    assert 1 <= in_flight["max"] <= 3, in_flight
    assert {r["last_attempt_by"] for r in rows} <= {"worker-a", "worker-b", "worker-c"}


async def test_auto_disable_records_warning_and_notice_then_resume(db: Database, service: WebhookService,
                                                                    start_worker: WorkerFactory,
                                                                    hooks: Receiver) -> None:
    from bisnesgpt.webhooks.service import endpoint_view

    acme, _ = await new_company(db)
    created = await service.create(acme, url=hooks.url("/flaky"))
    hooks.set("/flaky", status=500)
    await start_worker(webhook_auto_disable_min_failures=3, webhook_auto_disable_after_seconds=0.3)
    await emit_inbound(db, acme)

    async def disabled() -> bool:
        return not (await service.get(created.endpoint.id, acme)).enabled

    deadline = asyncio.get_running_loop().time() + 20
    while not await disabled():
        assert asyncio.get_running_loop().time() < deadline, "endpoint was never disabled"
        await asyncio.sleep(0.05)
    endpoint = await service.get(created.endpoint.id, acme)
    view = endpoint_view(endpoint, [])
    assert view["enabled"] is False and "disabled automatically" in view["disabled_reason"]
    assert "HTTP 500" in view["disabled_reason"] and "fix the receiver" in view["notice"]
    warning = await db.fetchrow("SELECT event_data, severity FROM process_events "
                                "WHERE event_type = 'webhook_endpoint_disabled'")
    assert warning is not None and warning["severity"] == "warning"
    assert warning["event_data"]["endpointId"] == created.endpoint.id
    seen = len(hooks.requests("/flaky"))
    # New events are not queued for a disabled endpoint; the waiting delivery pauses.
    await emit_inbound(db, acme)
    assert len(await delivery_rows(db, created.endpoint.id)) == 1
    await asyncio.sleep(0.5)
    assert len(hooks.requests("/flaky")) == seen

    hooks.set("/flaky", status=200)
    resumed = await service.update(created.endpoint.id, acme, enabled=True)
    assert resumed.enabled and resumed.disabled_reason is None and resumed.consecutive_failures == 0
    rows = await wait_rows(db, created.endpoint.id, lambda rs: rs[0]["status"] == "delivered")
    assert json.loads(hooks.successful("/flaky")[0].body)["id"] == rows[0]["event_id"]


async def test_stop_releases_unfinished_attempts(db: Database, service: WebhookService,
                                                 start_worker: WorkerFactory, hooks: Receiver) -> None:
    acme, _ = await new_company(db)
    created = await service.create(acme, url=hooks.url("/held"))
    import threading

    gate = threading.Event()
    hooks.set("/held", gate=gate)
    worker = await start_worker(holder="stopping")
    await emit_inbound(db, acme)
    await wait_received(hooks, 1, "/held")
    rows = await delivery_rows(db, created.endpoint.id)
    assert rows[0]["locked_by"] == "stopping"
    await worker.drain(0.2)
    await worker.stop()
    gate.set()
    rows = await delivery_rows(db, created.endpoint.id)
    assert rows[0]["locked_by"] is None and rows[0]["status"] == "pending"
    # Another worker picks it up at once (no lease wait).
    await start_worker(holder="successor")
    await wait_rows(db, created.endpoint.id, lambda rs: rs[0]["status"] == "delivered")


async def test_company_endpoint_limit_and_scoping(db: Database) -> None:
    from bisnesgpt.core.errors import Conflict, NotFound

    limited = WebhookService(db, SecretBox.from_hex(ENCRYPTION_KEY), make_settings(webhook_max_endpoints_per_company=2))
    acme, _ = await new_company(db)
    other, _ = await new_company(db)
    results = await asyncio.gather(*(limited.create(acme, url=f"https://hooks.example.com/{n}") for n in range(4)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 2
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    mine = await limited.list_endpoints(acme)
    with pytest.raises(NotFound):
        await limited.get(mine[0].id, other)
    with pytest.raises(NotFound):
        await limited.replay(mine[0].id, other, since=mine[0].created_at)
    assert await limited.list_endpoints(other) == []


LISTENER_PIDS = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"


async def test_listen_connection_comes_back_after_the_server_drops_it(db: Database, service: WebhookService,
                                                                       start_worker: WorkerFactory,
                                                                       hooks: Receiver) -> None:
    """With a 60 s poll, only NOTIFY can deliver promptly: it must survive a dropped connection."""
    acme, _ = await new_company(db)
    await service.create(acme, url=hooks.url("/listen"))
    worker = await start_worker(holder="listener", webhook_poll_interval_seconds=60)
    name = "bisnesgpt-listener-webhooks"

    async def listener_pids() -> list[int]:
        return [r["pid"] for r in await db.fetch(LISTENER_PIDS, name)]

    deadline = asyncio.get_running_loop().time() + 10
    while not (before := await listener_pids()):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await emit_inbound(db, acme)  # the worker's first look happens at start; wait for idle
    await wait_received(hooks, 1, "/listen", timeout=10)
    await db.execute("SELECT pg_terminate_backend($1)", before[0])
    deadline = asyncio.get_running_loop().time() + 15
    while not ((after := await listener_pids()) and after != before and worker.check().data["listening"]):
        assert asyncio.get_running_loop().time() < deadline, "LISTEN connection never came back"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    await emit_inbound(db, acme)
    await wait_received(hooks, 2, "/listen", timeout=10)


async def test_cleanup_deletes_finished_rows_past_retention(db: Database, service: WebhookService,
                                                            start_worker: WorkerFactory) -> None:
    acme, _ = await new_company(db)
    endpoint = (await service.create(acme, url="https://hooks.example.com/x")).endpoint
    for _ in range(3):
        await emit_inbound(db, acme)
    await db.execute("ALTER TABLE webhook_deliveries DISABLE TRIGGER trigger_webhook_deliveries_updated_at")
    rows = await delivery_rows(db, endpoint.id)
    await db.execute("UPDATE webhook_deliveries SET status = 'delivered', updated_at = now() - interval '40 days' "
                     "WHERE id = $1", rows[0]["id"])
    await db.execute("UPDATE webhook_deliveries SET status = 'dead', updated_at = now() - interval '10 days' "
                     "WHERE id = $1", rows[1]["id"])
    await db.execute("ALTER TABLE webhook_deliveries ENABLE TRIGGER trigger_webhook_deliveries_updated_at")
    await service.update(endpoint.id, acme, enabled=False)  # keep the worker away from the pending row
    worker = await start_worker(holder="cleaner")
    assert await worker.cleanup() == 1
    assert [r["id"] for r in await delivery_rows(db, endpoint.id)] == [rows[1]["id"], rows[2]["id"]]
