"""A phone's own rate limit, from the phone service to the meta engine's pacing (real PostgreSQL and Redis).

The engine reads the phone's row through ``PhoneCache`` and paces it by ``rates_for_phone``
(``engines/meta/engine.py``); these are the same calls, so a rate set through the service is
the one the shared Redis schedule spaces that phone's messages by.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bisnesgpt.config import load_settings
from bisnesgpt.core.errors import NotFound, ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.pacing import Pacer, rates_for_phone
from bisnesgpt.engines.meta.phone_rates import rate_limit
from bisnesgpt.engines.meta.phones import PhoneCache
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.tenancy import store as tenancy

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def service(db: Database) -> PhoneConfigService:
    async with db.transaction() as conn:
        await tenancy.create_company(conn, "acme", "Acme")
        await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type, meta_phone_number_id) "
                           "VALUES ('acme', 1, 'meta_direct', '1065'), ('acme', 0, 'wwebjs', NULL)")
    return PhoneConfigService(db, None, claims=None)


async def second_wait_ms(pacer: Pacer, cache: PhoneCache, company: str) -> int:
    """How long the phone's second message (to another recipient) waits behind its first."""
    phone = await cache.get("acme", 1)
    assert phone is not None
    rates = rates_for_phone(load_settings(), phone.settings)
    run = uuid.uuid4().hex[:8]
    first = await pacer.acquire(company, 1, f"601{run}", f"a{run}", rates)
    second = await pacer.acquire(company, 1, f"602{run}", f"b{run}", rates)
    assert first.go
    return 0 if second.go else second.wait_ms


async def test_the_engine_paces_a_phone_by_the_rate_the_service_set_and_by_the_default_after_a_reset(
        db: Database, redis: aioredis.Redis, service: PhoneConfigService) -> None:
    pacer, cache = Pacer(redis), PhoneCache(db, ttl=0)  # ttl 0: read the row every time, as after the 5 s
    company = f"acme-{uuid.uuid4().hex[:8]}"  # the Redis schedule's keys, apart from other runs
    default = await second_wait_ms(pacer, cache, company + "a")
    assert default <= 13  # 80/s: one slot every 12.5 ms

    config = await service.set_rate_limit("acme", 1, 2)
    assert config.settings["messages_per_second"] == 2
    # 2/s: the second message's slot is 500 ms after the first (less the time between the two calls).
    assert 300 <= await second_wait_ms(pacer, cache, company + "b") <= 500
    assert rate_limit(load_settings(), config.connection_type, config.settings).effective == 2

    reset = await service.set_rate_limit("acme", 1, None)
    assert "messages_per_second" not in reset.settings
    assert await second_wait_ms(pacer, cache, company + "c") <= 13


async def test_coexistence_numbers_fall_back_to_their_own_default(
        db: Database, service: PhoneConfigService) -> None:
    await db.execute("UPDATE phone_configs SET settings = '{\"coexistence\": true}' WHERE phone_index = 1")
    config = await service.set_rate_limit("acme", 1, 50)
    rate = rate_limit(load_settings(), config.connection_type, config.settings)
    assert (rate.configured, rate.default, rate.effective) == (50, 20, 50)
    config = await service.set_rate_limit("acme", 1, None)
    assert config.settings == {"coexistence": True}  # the other settings are kept


@pytest.mark.parametrize("bad", [0, -1, 10_000.5, float("nan"), float("inf")])
async def test_rates_outside_the_cap_are_refused_and_change_nothing(
        db: Database, service: PhoneConfigService, bad: float) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await service.set_rate_limit("acme", 1, bad)
    assert refused.value.errors and refused.value.errors[0]["field"] == "messagesPerSecond"
    assert await db.fetchval("SELECT settings FROM phone_configs WHERE phone_index = 1") == {}


async def test_whatsapp_web_and_unknown_phones_are_refused(service: PhoneConfigService) -> None:
    with pytest.raises(ValidationFailed, match="WWEBJS_MAX_MESSAGES_PER_SECOND"):
        await service.set_rate_limit("acme", 0, 5)
    with pytest.raises(NotFound):
        await service.set_rate_limit("acme", 9, 5)
