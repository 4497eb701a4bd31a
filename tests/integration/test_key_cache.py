"""The API key cache: pub/sub drops it at once, its TTL bounds it, nothing is cached without pub/sub."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from bisnesgpt.api.key_cache import KeyCache
from bisnesgpt.coordination.channels import API_KEYS_CHANGED, publish
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.tenancy.store import ApiKey
from tests.support.clock import ManualClock
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def a_key(key_id: int = 1) -> ApiKey:
    now = datetime.now(UTC)
    return ApiKey(id=key_id, company_id="acme", role="company", name="k", key_prefix="bgpt_", scopes=None,
                  phone_indexes=None, expires_at=None, created_at=now, last_used_at=now, revoked_at=None)


async def test_a_revocation_announced_on_pubsub_drops_the_cache_at_once(redis_url: str) -> None:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    coordinator = Coordinator(redis_url, namespace=namespace, process_name="api", role="api", host="h", peers={},
                              on_shutdown=lambda _reason: None)
    markers: list[object] = []
    coordinator.on("test:marker", markers.append)
    cache = KeyCache(60.0)
    cache.attach(coordinator)
    assert not cache.listening
    cache.put("h1", a_key(), "active", cache.generation)
    assert cache.get("h1") is None  # not listening: nothing is cached
    coordinator.start()
    client = redis_client(redis_url)
    try:
        await eventually(lambda: cache.listening, timeout=10, what="key cache listening")
        cache.put("h1", a_key(), "active", cache.generation)
        entry = cache.get("h1")
        assert entry is not None and entry.record.id == 1 and entry.company_status == "active"
        assert await publish(client, API_KEYS_CHANGED, {"keyId": 1}, namespace=namespace)
        await eventually(lambda: cache.get("h1") is None, timeout=5, what="cache dropped by api:keys")
        # Another deployment's announcement (another namespace) is not ours.
        cache.put("h1", a_key(), "active", cache.generation)
        assert await publish(client, API_KEYS_CHANGED, {"keyId": 1}, namespace=namespace + "-other")
        assert await publish(client, "test:marker", {"n": 1}, namespace=namespace)
        await eventually(lambda: markers, timeout=5, what="a later message heard")
        assert cache.get("h1") is not None
    finally:
        await client.aclose()
        await coordinator.stop()
    assert not cache.listening and cache.get("h1") is None  # the subscription ended: dropped, not cached


async def test_entries_expire_and_a_read_overtaken_by_a_drop_is_not_cached(redis_url: str) -> None:
    clock = ManualClock()
    cache = KeyCache(2.0, clock=clock)
    cache.listening = True  # as after attach() to a connected coordinator
    cache.put("h1", a_key(), "active", cache.generation)
    clock.now += 1.9
    assert cache.get("h1") is not None
    clock.now += 0.2
    assert cache.get("h1") is None  # the documented delay: never older than the TTL
    started = cache.generation
    cache.drop()  # a revocation heard while the key was being read
    cache.put("h2", a_key(2), "active", started)
    assert cache.get("h2") is None
    off = KeyCache(0.0, clock=clock)
    off.listening = True
    off.put("h1", a_key(), "active", off.generation)
    assert off.get("h1") is None  # API_KEY_CACHE_SECONDS=0: every request reads its key


async def test_a_cache_attached_to_a_running_coordinator_caches_only_once_its_channel_is_subscribed(
        redis_url: str) -> None:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    coordinator = Coordinator(redis_url, namespace=namespace, process_name="api", role="api", host="h", peers={},
                              on_shutdown=lambda _reason: None)
    coordinator.start()
    client = redis_client(redis_url)
    try:
        await eventually(lambda: coordinator.connected, timeout=10, what="coordinator connected")
        cache = KeyCache(60.0)
        cache.attach(coordinator)  # first use of the cache, as by an api process's first request
        assert cache.listening and not coordinator.hears(API_KEYS_CHANGED)
        cache.put("h1", a_key(), "active", cache.generation)
        assert cache.get("h1") is None  # a revocation published now would not be heard
        await eventually(lambda: coordinator.hears(API_KEYS_CHANGED), timeout=5, what="api:keys subscribed")
        cache.put("h1", a_key(), "active", cache.generation)
        assert cache.get("h1") is not None
        assert await publish(client, API_KEYS_CHANGED, {"keyId": 1}, namespace=namespace)
        await eventually(lambda: cache.get("h1") is None, timeout=5, what="cache dropped by api:keys")
    finally:
        await client.aclose()
        await coordinator.stop()
