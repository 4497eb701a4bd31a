"""The router's cache: pub/sub invalidation, the TTL backstop, no caching without pub/sub."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from bisnesgpt.config import load_settings
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.core.errors import EngineDisabled, NotFound, ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.router import MessageRouter, announce_change
from tests.support.pipeline import seed_tenant
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

NAMESPACE = f"test-{uuid.uuid4().hex[:8]}"

def coordinator(redis_url: str = "redis://127.0.0.1:1/0") -> Coordinator:
    return Coordinator(redis_url, namespace=NAMESPACE, process_name="api", role="api", host="test-host", peers={},
                       on_shutdown=lambda _reason: None)


SET_TYPE = "UPDATE phone_configs SET connection_type = $3 WHERE company_id = $1 AND phone_index = $2"


async def test_routes_by_connection_type_and_refuses_clearly(db: Database) -> None:
    await seed_tenant(db, "acme", {0: "wwebjs", 1: "meta_direct", 2: "360dialog", 3: None, 4: "official"})
    router = MessageRouter(db, load_settings(), coordinator(), ttl_seconds=30)
    assert [(await router.route("acme", i)).queue_name for i in range(4)] == [
        "wwebjs-messages", "meta-messages", "meta-messages", "wwebjs-messages"]
    with pytest.raises(ValidationFailed, match="official"):
        await router.route("acme", 4)
    with pytest.raises(NotFound):
        await router.route("acme", 9)
    no_meta = MessageRouter(db, load_settings(enable_meta=False), coordinator(), ttl_seconds=30)
    with pytest.raises(EngineDisabled):
        await no_meta.route("acme", 1)
    assert (await no_meta.route("acme", 0)).process_name == "wwebjs"


async def test_cache_is_invalidated_by_pubsub_and_bounded_by_its_ttl(db: Database, redis_url: str) -> None:
    await seed_tenant(db, "acme", {0: "wwebjs", 1: "wwebjs"})
    listener = coordinator(redis_url)
    now = [0.0]  # the router's clock: the TTL can expire only when the test moves it
    router = MessageRouter(db, load_settings(), listener, ttl_seconds=1.0, clock=lambda: now[0])
    publisher = aioredis.Redis.from_url(redis_url, decode_responses=True)
    listener.start()
    try:
        await eventually(lambda: _true(router.listening), timeout=10, what="router subscribed")
        assert (await router.route("acme", 0)).queue_name == "wwebjs-messages"
        assert (await router.route("acme", 1)).queue_name == "wwebjs-messages"
        await db.execute(SET_TYPE, "acme", 0, "meta_direct")
        await db.execute(SET_TYPE, "acme", 1, "meta_direct")
        # Cached: an unannounced change is not seen yet …
        assert (await router.route("acme", 0)).queue_name == "wwebjs-messages"
        # … an announced one is, for exactly that phone.
        await announce_change(publisher, NAMESPACE, "acme", 0, "meta_direct", "test")

        async def rerouted() -> bool:
            return (await router.route("acme", 0)).queue_name == "meta-messages"

        # The clock stands still, so nothing but the invalidation can explain the reroute.
        await eventually(rerouted, timeout=5, interval=0.005, what="pub/sub invalidation")
        assert (await router.route("acme", 1)).queue_name == "wwebjs-messages"
        # The TTL backstop catches the unannounced change.
        now[0] += 1.1
        assert (await router.route("acme", 1)).queue_name == "meta-messages"
    finally:
        await listener.stop()
        await publisher.aclose()


async def test_without_a_subscription_nothing_is_cached(db: Database) -> None:
    await seed_tenant(db, "acme", {0: "wwebjs"})
    listener = coordinator("redis://127.0.0.1:1/0")  # nothing listens there: never subscribed
    router = MessageRouter(db, load_settings(), listener, ttl_seconds=300)
    listener.start()
    try:
        assert (await router.route("acme", 0)).queue_name == "wwebjs-messages"
        await db.execute(SET_TYPE, "acme", 0, "360dialog")
        assert (await router.route("acme", 0)).queue_name == "meta-messages"
        assert not router.listening
    finally:
        await listener.stop()


async def _true(value: bool) -> bool:
    return value
