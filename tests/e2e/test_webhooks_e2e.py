"""Tenant webhooks end to end: spawned ``bisnesgpt run api`` processes, a real HTTP receiver.

These are the delivery guarantees tenants rely on. Events are produced in the test process the way
the product produces them (real status transitions, ``record_tenant_event`` for the engine
events), committed to the same database the spawned processes deliver from.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.infra.embedded_redis import EmbeddedRedis
from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port, http_ok
from tests.support.webhooks import (
    ADMIN_KEY,
    ENCRYPTION_KEY,
    Emitted,
    Receiver,
    auth,
    create_endpoint,
    emit_inbound,
    emit_message_statuses,
    emit_phone_status,
    emit_session_status,
    new_company,
    readme_python_verifier,
    receiver,
    spawn_api,
    write_node_verifier,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def hooks() -> Any:
    with receiver() as server:
        yield server


@pytest.fixture
def procs() -> Any:
    """Every process a test starts, killed (with children) however the test ends."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill_tree()


async def wait_all_delivered(db: Database, endpoint_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [dict(r) for r in await db.fetch(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id", endpoint_id)]
        if len(rows) >= count and all(r["status"] == "delivered" for r in rows):
            return rows
        if time.monotonic() > deadline:
            states = Counter(r["status"] for r in rows)
            raise AssertionError(f"{len(rows)} rows, states {dict(states)}; wanted {count} delivered")
        await asyncio.sleep(0.1)


def wait_received(server: Receiver, predicate: Any, timeout: float = 60, what: str = "") -> None:
    server.wait_for(predicate, timeout=timeout, what=what)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def report(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    line = (f"{name}: n={len(ms)} p50={percentile(ms, 50):.1f}ms p95={percentile(ms, 95):.1f}ms "
            f"max={max(ms):.1f}ms mean={statistics.mean(ms):.1f}ms")
    print(line)
    return line


# --- inbound, status and session events arrive signed; tenants are isolated ---------------------


async def test_events_arrive_signed_and_tenants_are_isolated(db: Database, database_url: str, redis_url: str,
                                                             tmp_path: Path, hooks: Receiver, procs: list[Proc]
                                                             ) -> None:
    api, base = spawn_api(tmp_path, database_url, redis_url)
    procs.append(api)
    company_a, key_a = await new_company(db)
    company_b, key_b = await new_company(db)
    endpoint_a = create_endpoint(base, key_a, hooks.url("/a"), include_raw=True)
    endpoint_b = create_endpoint(base, key_b, hooks.url("/b"))
    secret_a = endpoint_a.pop("secret")
    assert secret_a.startswith("whsec_") and endpoint_a["company_id"] == company_a
    shown = httpx.get(f"{base}/api/v1/webhooks/{endpoint_a['id']}", headers=auth(key_a)).json()
    assert "secret" not in shown and shown["enabled"] is True

    emitted: list[str] = []
    for emit in (emit_inbound(db, company_a, raw={"provider": "raw inbound"}),
                 emit_message_statuses(db, company_a, ("sending", "sent", "delivered", "read")),
                 emit_session_status(db, company_a, status="qr"),
                 emit_session_status(db, company_a, status="ready"),
                 emit_session_status(db, company_a, status="disconnected"),
                 emit_phone_status(db, company_a)):
        emitted += (await emit).event_ids
    b_events = (await emit_inbound(db, company_b)).event_ids
    wait_received(hooks, lambda r: len(r.successful("/a")) >= len(emitted) and len(r.successful("/b")) >= 1,
                  what="all events of both tenants")

    verify = readme_python_verifier()
    node = shutil.which("node")
    node_script = write_node_verifier(tmp_path) if node else None
    received = {r.event_id: r for r in hooks.successful("/a")}
    assert sorted(received) == sorted(emitted)
    types = Counter(r.event["type"] for r in received.values())
    assert types == {"message.status": 4, "session.status": 3, "message.inbound": 1, "phone.status": 1}
    for event_id, request in received.items():
        header = request.headers["x-bisnesgpt-signature"]
        assert verify(secret_a, request.body, header), event_id
        assert not verify(secret_a, request.body + b"x", header)
        assert request.event["id"] == event_id and request.event["company_id"] == company_a
        if node_script is not None:
            for body, expected in ((request.body, "valid"), (request.body.replace(b"{", b"[", 1), "invalid")):
                out = subprocess.run([node, str(node_script), secret_a, header, base64.b64encode(body).decode()],
                                     capture_output=True, text=True, timeout=30, check=True)
                assert out.stdout.strip() == expected, out.stderr
    qr = next(r.event for r in received.values() if r.event["data"].get("status") == "qr")
    assert qr["data"]["qr"].startswith("data:image/png;base64,")
    inbound = next(r.event for r in received.values() if r.event["type"] == "message.inbound")
    assert inbound["data"]["raw"] == {"provider": "raw inbound"}
    assert [r.event_id for r in hooks.requests("/b")] == b_events  # B gets only its own

    # Tenant A can never read, change or replay tenant B's webhook (404, as if it did not exist).
    b_id = endpoint_b["id"]
    b_delivery = httpx.get(f"{base}/api/v1/webhooks/{b_id}/deliveries", headers=auth(key_b)).json()["data"][0]["id"]
    a = auth(key_a)
    attempts = [
        httpx.get(f"{base}/api/v1/webhooks/{b_id}", headers=a),
        httpx.patch(f"{base}/api/v1/webhooks/{b_id}", json={"enabled": False}, headers=a),
        httpx.get(f"{base}/api/v1/webhooks/{b_id}/deliveries", headers=a),
        httpx.get(f"{base}/api/v1/webhooks/{b_id}/deliveries/{b_delivery}", headers=a),
        httpx.post(f"{base}/api/v1/webhooks/{b_id}/deliveries/{b_delivery}/retry", headers=a),
        httpx.post(f"{base}/api/v1/webhooks/{b_id}/deliveries/retry-dead", headers=a),
        httpx.post(f"{base}/api/v1/webhooks/{b_id}/replay", params={"since": "2000-01-01T00:00:00Z"}, headers=a),
        httpx.post(f"{base}/api/v1/webhooks/{b_id}/rotate-secret", headers=a),
        httpx.delete(f"{base}/api/v1/webhooks/{b_id}", headers=a),
        # B's delivery through A's own endpoint is not reachable either.
        httpx.get(f"{base}/api/v1/webhooks/{endpoint_a['id']}/deliveries/{b_delivery}", headers=a),
        httpx.post(f"{base}/api/v1/webhooks/{endpoint_a['id']}/deliveries/{b_delivery}/retry", headers=a),
        httpx.post(f"{base}/api/v1/webhooks", json={"url": hooks.url("/x"), "company_id": company_b}, headers=a),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.request.method, response.request.url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert company_b not in response.text
    listed = httpx.get(f"{base}/api/v1/webhooks", headers=a).json()["data"]
    assert [e["id"] for e in listed] == [endpoint_a["id"]]
    assert httpx.get(f"{base}/api/v1/webhooks", params={"company_id": company_b}, headers=a).status_code == 404
    still = httpx.get(f"{base}/api/v1/webhooks/{b_id}", headers=auth(key_b)).json()
    assert still["enabled"] is True
    assert len(hooks.requests("/b")) == 1  # nothing was replayed or retried for B
    admin_view = httpx.get(f"{base}/api/v1/webhooks", headers=auth(ADMIN_KEY)).json()["data"]
    assert {e["id"] for e in admin_view} == {endpoint_a["id"], b_id}
    assert httpx.get(f"{base}/api/v1/webhooks", headers={"Authorization": "Bearer nope"}).status_code == 401

    # Client mistakes are clear 422 problems; nothing changes.
    for bad in ({"events": ["message.sent"]}, {"headers": {"X-Bisnesgpt-Event-Id": "x"}}, {"url": "ftp://x"},
                {"unknown": 1}, {"enabled": "maybe"}):
        response = httpx.patch(f"{base}/api/v1/webhooks/{endpoint_a['id']}", json=bad, headers=a)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["errors"], response.text

    # Rotation through the API: the new secret is shown once; during the overlap both sign.
    rotated = httpx.post(f"{base}/api/v1/webhooks/{endpoint_a['id']}/rotate-secret",
                         json={"overlap_seconds": 600}, headers=a)
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret_a
    new_secret = rotated.json()["secret"]
    assert rotated.json()["secret_rotation"]["previous_secret_valid_until"] is not None
    after_rotation = await emit_session_status(db, company_a, status="ready")
    wait_received(hooks, lambda r: after_rotation.event_ids[0] in r.event_ids("/a"), what="post-rotation event")
    request = next(r for r in hooks.requests("/a") if r.event_id == after_rotation.event_ids[0])
    header = request.headers["x-bisnesgpt-signature"]
    assert header.count("v1=") == 2
    assert verify(new_secret, request.body, header) and verify(secret_a, request.body, header)

    # Latency from commit to receipt, one event at a time (new events wake the worker via NOTIFY).
    latencies: list[float] = []
    for n in range(40):
        sent = await emit_inbound(db, company_a, text=f"latency {n}")
        wait_received(hooks, lambda r, eid=sent.event_ids[0]: eid in r.event_ids("/a"), timeout=30)
        latencies.append(next(r.at for r in hooks.requests("/a") if r.event_id == sent.event_ids[0])
                         - sent.committed_at)
        await asyncio.sleep(0.02)
    report("commit-to-receipt latency (single events, 1 api process)", latencies)
    metrics = httpx.get(f"{base}/metrics").text
    delivered_line = next(line for line in metrics.splitlines()
                          if line.startswith("bisnesgpt_webhook_delivered_total"))
    assert float(delivered_line.split()[-1]) >= len(emitted) + 40 + 1
    assert "bisnesgpt_webhook_lag_seconds" in metrics and 'bisnesgpt_webhook_backlog{state="retrying"}' in metrics
    health = httpx.get(f"{base}/health").json()
    assert health["checks"]["webhookDelivery"]["ok"] is True and health["checks"]["webhookDelivery"]["listening"]


async def test_private_destinations_refused_unless_allowed(db: Database, database_url: str, redis_url: str,
                                                           tmp_path: Path, hooks: Receiver, procs: list[Proc]
                                                           ) -> None:
    strict, base = spawn_api(tmp_path, database_url, redis_url, name="strict",
                             WEBHOOK_ALLOW_PRIVATE_DESTINATIONS="false")
    procs.append(strict)
    company, key = await new_company(db)
    for url, words in ((hooks.url("/p"), "127.0.0.1, a loopback address"),
                       (hooks.url("/p", host="localhost"), "localhost resolves to"),
                       ("http://10.1.2.3/hook", "a private address"),
                       ("http://169.254.169.254/latest/meta-data", "a link-local address"),
                       ("http://[::1]:8080/", "a loopback address"),
                       ("ftp://example.com/x", "http:// or https://")):
        response = httpx.post(f"{base}/api/v1/webhooks", json={"url": url}, headers=auth(key))
        assert response.status_code == 422, (url, response.text)
        problem = response.json()
        assert problem["type"].endswith("/webhook-destination-refused") and words in problem["detail"], problem
        assert problem["errors"][0]["field"] == "url"
    assert httpx.get(f"{base}/api/v1/webhooks", headers=auth(key)).json()["data"] == []

    # An endpoint saved while private destinations were allowed is still refused at delivery
    # time once they are not: the resolved address is checked before every attempt.
    allowing, allowing_base = spawn_api(tmp_path, database_url, redis_url, name="allowing",
                                        WEBHOOK_DELIVERY_ENABLED="false")
    procs.append(allowing)
    endpoint = create_endpoint(allowing_base, key, hooks.url("/p", host="localhost"))
    emitted = await emit_inbound(db, company)

    async def refused_attempts() -> list[dict[str, Any]]:
        return [dict(r) for r in await db.fetch(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'retrying'", endpoint["id"])]

    deadline = time.monotonic() + 30
    while not (rows := await refused_attempts()):
        assert time.monotonic() < deadline, "the strict process never attempted the delivery"
        await asyncio.sleep(0.1)
    assert rows[0]["event_id"] == emitted.event_ids[0] and rows[0]["status"] == "retrying"
    assert "destination refused: localhost resolves to" in rows[0]["last_error"]
    assert hooks.requests() == []


async def test_receiver_failing_three_times_gets_the_event_exactly_once_more(
        db: Database, database_url: str, redis_url: str, tmp_path: Path, hooks: Receiver, procs: list[Proc]) -> None:
    api, base = spawn_api(tmp_path, database_url, redis_url)
    procs.append(api)
    company, key = await new_company(db)
    endpoint = create_endpoint(base, key, hooks.url("/flaky"))
    hooks.set("/flaky", fail_first=3, fail_status=500)
    emitted = await emit_inbound(db, company)
    rows = await wait_all_delivered(db, endpoint["id"], 1)
    # Delivered and no row left open: nothing can be sent again.
    assert rows[0]["attempts"] == 4 and rows[0]["status"] == "delivered"
    requests = hooks.requests("/flaky")
    assert [r.status for r in requests] == [500, 500, 500, 200]
    assert {r.event_id for r in requests} == set(emitted.event_ids)
    assert {r.event["id"] for r in requests} == set(emitted.event_ids)
    assert [r.headers["x-bisnesgpt-attempt"] for r in requests] == ["1", "2", "3", "4"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert all(gap > 0.05 for gap in gaps), gaps  # backed off between attempts
    log = httpx.get(f"{base}/api/v1/webhooks/{endpoint['id']}/deliveries", headers=auth(key)).json()["data"]
    assert len(log) == 1
    assert (log[0]["status"], log[0]["attempts"], log[0]["last_status_code"], log[0]["next_attempt_at"]) == (
        "delivered", 4, 200, None)


async def emit_backlog(db: Database, company: str, count: int) -> list[str]:
    ids: list[str] = []
    for n in range(count):
        emitted: Emitted = await (emit_inbound(db, company, text=f"backlog {n}") if n % 3 else
                                  emit_session_status(db, company, status="ready"))
        ids += emitted.event_ids
    return ids


async def test_kill_9_of_the_delivery_process_mid_backlog_loses_nothing(
        db: Database, database_url: str, redis_url: str, tmp_path: Path, hooks: Receiver, procs: list[Proc]) -> None:
    first, base = spawn_api(tmp_path, database_url, redis_url, name="api-first")
    procs.append(first)
    company, key = await new_company(db)
    endpoint = create_endpoint(base, key, hooks.url("/backlog"))
    hooks.set("/backlog", delay=0.03)
    emitted = await emit_backlog(db, company, 300)
    wait_received(hooks, lambda r: len(r.requests("/backlog")) >= 60, what="60 deliveries before the kill")
    os.kill(first.pid, signal.SIGKILL)
    assert first.popen.wait(10) == -signal.SIGKILL
    in_flight = await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 "
                                  "AND locked_until > now()", endpoint["id"])
    delivered_at_kill = len(set(hooks.event_ids("/backlog", ok_only=True)))
    emitted += await emit_backlog(db, company, 30)  # events keep coming while nothing delivers

    second, _ = spawn_api(tmp_path, database_url, redis_url, name="api-second")
    procs.append(second)
    rows = await wait_all_delivered(db, endpoint["id"], len(emitted), timeout=90)
    received = hooks.event_ids("/backlog", ok_only=True)
    assert set(received) == set(emitted) and len(rows) == len(emitted)
    duplicates = len(received) - len(set(received))
    print(f"kill -9: {delivered_at_kill} delivered before the kill, {in_flight} claims in flight at the kill, "
          f"{len(emitted)} events, {duplicates} duplicate deliveries after restart")
    assert duplicates <= in_flight  # only attempts cut short by the kill can repeat
    assert "released claims left by a previous api" in second.output() or in_flight == 0


def health_status(base: str) -> str | None:
    try:
        return str(httpx.get(f"{base}/health", timeout=1.0).json().get("status"))
    except (httpx.HTTPError, ValueError):
        return None


async def test_redis_restart_mid_backlog_loses_nothing(db: Database, database_url: str, tmp_path: Path,
                                                       hooks: Receiver, procs: list[Proc]) -> None:
    valkey = EmbeddedRedis(tmp_path / "valkey", port=free_port())
    handle = valkey.ensure()
    try:
        api, base = spawn_api(tmp_path, database_url, handle.url)
        procs.append(api)
        company, key = await new_company(db)
        endpoint = create_endpoint(base, key, hooks.url("/redis"))
        hooks.set("/redis", delay=0.03)
        emitted = await emit_backlog(db, company, 200)
        wait_received(hooks, lambda r: len(r.requests("/redis")) >= 40, what="40 deliveries before the restart")
        assert valkey.stop()
        # The api keeps serving without Redis (200, "degraded"); its health says Redis is down.
        wait_until(lambda: health_status(base) == "degraded", timeout=30, what="api health to notice Redis is down")
        during = len(hooks.requests("/redis"))
        emitted += await emit_backlog(db, company, 30)
        wait_received(hooks, lambda r: len(r.requests("/redis")) >= during + 20, what="deliveries without Redis")
        handle = valkey.ensure()
        wait_until(lambda: health_status(base) == "healthy", timeout=60, what="api healthy again after Redis restart")
        emitted += await emit_backlog(db, company, 10)
        rows = await wait_all_delivered(db, endpoint["id"], len(emitted), timeout=90)
        received = hooks.event_ids("/redis", ok_only=True)
        assert sorted(received) == sorted(emitted)  # every event, exactly once
        assert len(rows) == len(emitted) and api.popen.poll() is None
    finally:
        valkey.stop()


async def test_receiver_down_past_the_horizon_is_dead_lettered_then_replayed(
        db: Database, database_url: str, redis_url: str, tmp_path: Path, procs: list[Proc]) -> None:
    api, base = spawn_api(tmp_path, database_url, redis_url, WEBHOOK_RETRY_HORIZON_SECONDS="2")
    procs.append(api)
    company, key = await new_company(db)
    port = free_port()  # nothing listens here yet: the receiver is down
    endpoint = create_endpoint(base, key, f"http://127.0.0.1:{port}/hook")
    since = (await db.fetchval("SELECT now()")).isoformat()
    emitted = await emit_inbound(db, company)
    deliveries_url = f"{base}/api/v1/webhooks/{endpoint['id']}/deliveries"

    def dead() -> list[dict[str, Any]]:
        return list(httpx.get(deliveries_url, params={"status": "dead"}, headers=auth(key)).json()["data"])

    wait_until(lambda: bool(dead()), timeout=30, what="the delivery to be dead-lettered")
    row = dead()[0]
    assert row["event_id"] == emitted.event_ids[0] and row["attempts"] >= 2
    assert row["last_error"].startswith("ConnectError") and row["next_attempt_at"] is None

    with receiver(port) as hooks:  # the receiver is back
        replayed = httpx.post(f"{base}/api/v1/webhooks/{endpoint['id']}/replay", params={"since": since},
                              headers=auth(key))
        assert replayed.status_code == 202 and replayed.json() == {"replayed": 1, "has_more": False, "next": None}
        wait_received(hooks, lambda r: len(r.successful("/hook")) == 1, what="the replayed event")
        assert hooks.event_ids("/hook") == emitted.event_ids

        # The dead row itself can be retried too (same event id), and from the CLI as well.
        retried = httpx.post(f"{deliveries_url}/{row['id']}/retry", headers=auth(key))
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        wait_received(hooks, lambda r: len(r.successful("/hook")) == 2, what="the retried event")
        env = clean_env(DATABASE_URL=database_url, ENCRYPTION_KEY=ENCRYPTION_KEY, DATA_DIR=str(tmp_path / "cli"))
        cli = [sys.executable, "-m", "bisnesgpt", "webhooks"]
        out = subprocess.run([*cli, "replay", endpoint["id"], "--since", "1h"], env=env, capture_output=True,
                             text=True, timeout=60, check=True)
        assert "done: 1 event(s) queued for redelivery" in out.stdout
        wait_received(hooks, lambda r: len(r.successful("/hook")) == 3, what="the CLI-replayed event")
        assert set(hooks.event_ids("/hook")) == set(emitted.event_ids)
        listing = subprocess.run([*cli, "deliveries", endpoint["id"], "--json"], env=env, capture_output=True,
                                 text=True, timeout=60, check=True)
        assert '"status": "delivered"' in listing.stdout and emitted.event_ids[0] in listing.stdout
        shown = subprocess.run([*cli, "list", "--company", company], env=env, capture_output=True, text=True,
                               timeout=60, check=True)
        assert endpoint["id"] in shown.stdout
        # The CLI applies the same destination rules: refused by default, allowed by the operator.
        create = [*cli, "create", "--company", company, "--url", hooks.url("/cli"), "--event", "message.inbound"]
        refused = subprocess.run(create, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "127.0.0.1, a loopback address" in refused.stderr
        allowed = subprocess.run(create, env={**env, "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS": "true"},
                                 capture_output=True, text=True, timeout=60, check=True)
        assert '"secret": "whsec_' in allowed.stdout and "not shown again" in allowed.stdout


async def test_slow_receiver_does_not_delay_another_tenant(db: Database, database_url: str, redis_url: str,
                                                           tmp_path: Path, hooks: Receiver, procs: list[Proc]
                                                           ) -> None:
    api, base = spawn_api(tmp_path, database_url, redis_url, WEBHOOK_WORKER_CONCURRENCY="6",
                          WEBHOOK_ENDPOINT_CONCURRENCY="2", WEBHOOK_TIMEOUT_SECONDS="60")
    procs.append(api)
    slow_company, slow_key = await new_company(db)
    fast_company, fast_key = await new_company(db)
    slow_endpoint = create_endpoint(base, slow_key, hooks.url("/slow"))
    create_endpoint(base, fast_key, hooks.url("/fast"))
    gate = threading.Event()
    slow = hooks.set("/slow", gate=gate, gate_timeout=45)  # holds every request until released
    slow_ids = await emit_backlog(db, slow_company, 20)
    wait_received(hooks, lambda r: slow.served >= 2, what="the slow tenant's requests to hang")

    fast_events: list[Emitted] = []
    for n in range(10):
        fast_events.append(await emit_inbound(db, fast_company, text=f"fast {n}"))
        wait_received(hooks, lambda r, n=n: len(r.successful("/fast")) == n + 1, timeout=30,
                      what="the other tenant's event while the slow receiver hangs")
    # Every fast delivery completed while all of the slow tenant's requests were still hanging,
    # and the slow endpoint never had more than its bound in flight.
    assert slow.completed == 0 and slow.served == 2
    by_id = {r.event_id: r.at for r in hooks.successful("/fast")}
    report("other tenant's latency while one receiver hangs", [by_id[e.event_ids[0]] - e.committed_at
                                                               for e in fast_events])
    gate.set()
    await wait_all_delivered(db, slow_endpoint["id"], len(slow_ids), timeout=60)
    assert sorted(hooks.event_ids("/slow", ok_only=True)) == sorted(slow_ids)


async def test_two_api_instances_deliver_a_backlog_exactly_once(db: Database, database_url: str, redis_url: str,
                                                                tmp_path: Path, hooks: Receiver, procs: list[Proc]
                                                                ) -> None:
    # Two slots per process: one process alone would need 180 x 30 ms / 2 = 2.7 s, so the
    # other (woken by NOTIFY or its 1 s poll) necessarily takes part.
    port = free_port()
    first, base = spawn_api(tmp_path, database_url, redis_url, name="api-0", port=port,
                            WEBHOOK_WORKER_CONCURRENCY="2")
    procs.append(first)
    second, _ = spawn_api(tmp_path, database_url, redis_url, name="api-1", port=port, INSTANCE_ID="1",
                          WEBHOOK_WORKER_CONCURRENCY="2")
    procs.append(second)
    endpoints: list[str] = []
    emitted: list[str] = []
    companies = [await new_company(db) for _ in range(3)]
    for n, (_company, key) in enumerate(companies):
        endpoints.append(create_endpoint(base, key, hooks.url(f"/shared{n}"))["id"])
    for n in range(3):
        hooks.set(f"/shared{n}", delay=0.03)
    for company, _key in companies:
        emitted += await emit_backlog(db, company, 60)
    started = time.monotonic()
    holders: set[str] = set()
    for endpoint_id in endpoints:
        rows = await wait_all_delivered(db, endpoint_id, 60, timeout=90)
        holders |= {r["last_attempt_by"] for r in rows}
    elapsed = time.monotonic() - started
    received = hooks.event_ids(ok_only=True)
    assert sorted(received) == sorted(emitted)  # each event exactly once across both processes
    assert holders == {"api", "api-1"}, holders
    print(f"two api instances: {len(emitted)} events over 3 endpoints delivered in {elapsed:.1f}s "
          f"(receiver 30 ms per request, 2 slots per process), shared by {sorted(holders)}")
    assert psutil.pid_exists(first.pid) and psutil.pid_exists(second.pid)


async def test_legacy_role_delivers_too(db: Database, database_url: str, redis_url: str, tmp_path: Path,
                                        hooks: Receiver, procs: list[Proc]) -> None:
    port = free_port()
    from tests.support.webhooks import api_env

    env = api_env(database_url, redis_url, free_port(), tmp_path, PORT=str(port), ENABLE_WWEBJS="false",
                  ENABLE_META="false")
    legacy = Proc(["run", "legacy"], cwd=tmp_path, env=env, log_name="legacy")
    procs.append(legacy)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=60, what="legacy /health")
    company, key = await new_company(db)
    create_endpoint(f"http://127.0.0.1:{port}", key, hooks.url("/legacy"))
    emitted = await emit_session_status(db, company, status="ready")
    wait_received(hooks, lambda r: len(r.successful("/legacy")) == 1, what="delivery from legacy")
    assert hooks.event_ids("/legacy") == emitted.event_ids
