"""Rate limits: guessing keys, hammering with one key, sending past a quota, guessing sign-ins.

Before these limits an attacker made 1,000 wrong-key requests at 209/s, 300 wrong dashboard
sign-ins and 400 sends in 7 s without one 429 or a recorded failure. Each test runs a real
``bisnesgpt run api`` with small limits; counting is in Redis, so a second api instance on
the same Redis sees the same budget (tested for the failure lock-out).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bisnesgpt.coordination.channels import AUTH_FAILED, channel_name, deployment_namespace
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from tests.support.pipeline import ADMIN_KEY, ApiServer, Tenant, seed_tenant
from tests.support.polling import eventually
from tests.support.servers import unique_name

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]

PERSON = "60123456789"
LIMITS = {"AUTH_FAILURE_LIMIT": "5", "AUTH_FAILURE_WINDOW_SECONDS": "600", "API_KEY_REQUESTS_PER_MINUTE": "8",
          "DASHBOARD_SIGN_IN_FREE_ATTEMPTS": "2", "DASHBOARD_SIGN_IN_BACKOFF_BASE_SECONDS": "60",
          "SEND_QUOTA_CACHE_SECONDS": "0", "FORWARDED_ALLOW_IPS": "127.0.0.1"}


@pytest.fixture
async def limited(tmp_path: Path, database_url: str, db: Database, redis_url: str) -> AsyncIterator[ApiServer]:
    server = ApiServer(tmp_path / "api", database_url, redis_url, **LIMITS)
    try:
        yield await server.start()
    finally:
        server.stop()


def _from(address: str) -> dict[str, str]:
    """Headers of a request relayed by the trusted proxy (127.0.0.1) for ``address``."""
    return {"X-Forwarded-For": address}


async def test_wrong_keys_lock_out_the_address_across_instances_with_a_429_an_event_and_a_metric(
        limited: ApiServer, db: Database, database_url: str, redis_url: str, tmp_path: Path) -> None:
    tenant = await seed_tenant(db, unique_name("acme"), {0: "wwebjs"})
    attacker, bystander = _from("203.0.113.7"), _from("198.51.100.9")
    async with httpx.AsyncClient(base_url=limited.url) as client:
        answers = [(await client.get("/api/v1/messages", headers={**attacker, "X-API-Key": f"bgpt_wrong{i}"}))
                   for i in range(5)]
        assert [a.status_code for a in answers] == [401] * 5
        locked = await client.get("/api/v1/messages", headers={**attacker, "X-API-Key": "bgpt_wrong-again"})
        assert locked.status_code == 429, locked.text
        assert locked.json()["type"].endswith("/rate-limited")
        assert int(locked.headers["Retry-After"]) >= 1
        # No oracle: while locked out, the right key is refused too ...
        right = await client.get("/api/v1/messages", headers={**attacker, **tenant.headers})
        assert right.status_code == 429
        # ... but only for that address.
        assert (await client.get("/api/v1/messages", headers={**bystander, **tenant.headers})).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert re.search(r'bisnesgpt_auth_failures_total\{surface="api"\} 5\.0', metrics), metrics[-3000:]
    assert 'bisnesgpt_rate_limit{limit="auth_failures"} 5.0' in metrics
    assert 'bisnesgpt_rate_limited_total{limit="auth_failures"} 2.0' in metrics
    events = await db.fetch("SELECT event_data FROM process_events WHERE event_type = 'auth.rate_limited'")
    assert [e["event_data"]["address"] for e in events] == ["203.0.113.7"]
    # A second api instance on the same Redis shares the count.
    other = ApiServer(tmp_path / "api2", database_url, redis_url, instance_id=1, name="api2", **LIMITS)
    try:
        await other.start()
        async with httpx.AsyncClient(base_url=other.url) as client:
            again = await client.get("/api/v1/messages", headers={**attacker, **tenant.headers})
        assert again.status_code == 429
    finally:
        other.stop()


async def test_an_address_remembered_clean_is_locked_out_everywhere_once_it_fails_on_one_instance(
        db: Database, database_url: str, redis_url: str, tmp_path: Path) -> None:
    # With API_KEY_CACHE_SECONDS both instances skip the lock-out check of an address they found
    # without failures; the failures counted on one must end that on the other at once.
    cached = {**LIMITS, "API_KEY_CACHE_SECONDS": "60", "API_KEY_REQUESTS_PER_MINUTE": "0"}
    tenant = await seed_tenant(db, unique_name("acme"), {0: "wwebjs"})
    attacker = _from("203.0.113.77")
    first = ApiServer(tmp_path / "api1", database_url, redis_url, **cached)
    second = ApiServer(tmp_path / "api2", database_url, redis_url, instance_id=1, name="api2", **cached)
    try:
        await first.start()
        await second.start()
        channel = channel_name(deployment_namespace(None, database_url, redis_url), AUTH_FAILED)
        async with httpx.AsyncClient(base_url=first.url) as one, httpx.AsyncClient(base_url=second.url) as two:
            for client in (one, two):  # each builds its limits (subscribing to api:auth-failed)
                assert (await client.get("/api/v1/messages", headers={**attacker, **tenant.headers})
                        ).status_code == 200

            async def both_subscribed() -> bool:
                return dict(await redis.pubsub_numsub(channel)).get(channel, 0) >= 2

            redis = redis_client(redis_url)
            try:
                await eventually(both_subscribed, timeout=10, what=f"both instances subscribed to {channel}")
            finally:
                await redis.aclose()
            for client in (one, two):  # now heard: both remember the address clean
                assert (await client.get("/api/v1/messages", headers={**attacker, **tenant.headers})
                        ).status_code == 200
            answers = [(await one.get("/api/v1/messages", headers={**attacker, "X-API-Key": f"bgpt_wrong{i}"}))
                       for i in range(5)]
            assert [a.status_code for a in answers] == [401] * 5
            locked = await one.get("/api/v1/messages", headers={**attacker, **tenant.headers})
            assert locked.status_code == 429 and "failed authentications" in locked.json()["detail"], locked.text

            async def locked_on_the_other() -> bool:
                answer = await two.get("/api/v1/messages", headers={**attacker, **tenant.headers})
                assert answer.status_code in (200, 429), answer.text
                return answer.status_code == 429 and "failed authentications" in answer.json()["detail"]

            await eventually(locked_on_the_other, timeout=3, what="the second instance hears of the failures")
    finally:
        first.stop()
        second.stop()


async def test_one_key_is_limited_to_its_request_rate_and_others_are_not(limited: ApiServer, db: Database) -> None:
    busy = await seed_tenant(db, unique_name("busy"), {0: "wwebjs"})
    calm = await seed_tenant(db, unique_name("calm"), {0: "wwebjs"})
    async with httpx.AsyncClient(base_url=limited.url) as client:
        statuses = [(await client.get("/api/v1/messages", headers=busy.headers)).status_code for _ in range(10)]
        assert statuses[:8] == [200] * 8
        assert statuses[8:] == [429, 429]
        assert (await client.get("/api/v1/messages", headers=calm.headers)).status_code == 200


async def _send(client: httpx.AsyncClient, tenant: Tenant, text: str) -> httpx.Response:
    return await client.post("/api/v1/messages", headers=tenant.headers,
                             json={"to": PERSON, "type": "text", "text": {"body": text}})


async def test_sends_over_the_companys_quota_get_429_and_nothing_is_stored(limited: ApiServer, db: Database) -> None:
    quota = await seed_tenant(db, unique_name("quota"), {0: "wwebjs"})
    free = await seed_tenant(db, unique_name("free"), {0: "wwebjs"})
    assert limited.proc is not None
    set_quota = subprocess.run([sys.executable, "-m", "bisnesgpt", "companies", "quota", quota.company_id,
                                "--per-minute", "3", "--per-day", "100"], env=limited.env,
                               capture_output=True, text=True, timeout=60, check=False)
    assert set_quota.returncode == 0, set_quota.stderr
    assert "3 per minute, 100 per day" in set_quota.stdout
    async with httpx.AsyncClient(base_url=limited.url) as client:
        accepted = [await _send(client, quota, f"m{i}") for i in range(3)]
        assert [a.status_code for a in accepted] == [202] * 3
        over = await _send(client, quota, "one too many")
        assert over.status_code == 429, over.text
        assert over.json()["type"].endswith("/send-quota-exceeded")
        assert int(over.headers["Retry-After"]) >= 1
        # Another company has no quota (the default): not affected.
        assert [(await _send(client, free, f"f{i}")).status_code for i in range(5)] == [202] * 5
    stored = await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", quota.company_id)
    assert stored == 3
    assert await db.fetchval("SELECT count(*) FROM messages WHERE content = 'one too many'") == 0


async def _sign_in(client: httpx.AsyncClient, key: str, address: str) -> httpx.Response:
    form = await client.get("/dashboard/login", headers=_from(address))
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return await client.post("/dashboard/login", headers=_from(address),
                             data={"api_key": key, "csrf": token.group(1), "next": "/dashboard"})


async def test_dashboard_sign_in_backs_off_after_failures(limited: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as client:
        first = [await _sign_in(client, f"bgpt_guess{i}", "192.0.2.50") for i in range(3)]
        assert [r.status_code for r in first] == [401, 401, 401]
        assert "Wait 60 s" in first[2].text  # the third failure (past two free ones) imposes the base wait
        waiting = await _sign_in(client, ADMIN_KEY, "192.0.2.50")
        assert waiting.status_code == 429
        assert int(waiting.headers["Retry-After"]) >= 50
        # Another address signs in at once; the backoff is per address.
        assert (await _sign_in(client, ADMIN_KEY, "192.0.2.51")).status_code == 303


async def test_limits_judged_together_take_from_none_when_one_refuses(redis_url: str) -> None:
    from bisnesgpt.infra.rate_limits import GcraLimiter, Rate
    from bisnesgpt.infra.redis import redis_client

    client = redis_client(redis_url)
    try:
        limiter = GcraLimiter(client, "test:gcra")
        minute, day = Rate(5, 60), Rate(2, 86_400)
        verdicts = [await limiter.check([("m", minute), ("d", day)]) for _ in range(3)]
        assert [v.allowed for v in verdicts] == [True, True, False]
        assert verdicts[2].retry_after > 3600  # the day's budget is the one used up
        # The refused send took nothing from the minute: 3 more fit in it alone.
        assert [(await limiter.check([("m", minute)])).allowed for _ in range(4)] == [True, True, True, False]
        # peek never counts.
        assert all([(await limiter.check([("p", Rate(1, 60))], "peek")).allowed for _ in range(5)])
    finally:
        await client.aclose()
