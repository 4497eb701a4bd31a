"""A real ProcessContext (own pool, Redis client, producer) for in-process component tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bisnesgpt.config import Role, Settings
from bisnesgpt.coordination.channels import deployment_namespace
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.coordination.leases import holder_id
from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.processes.context import ProcessContext, process_name_for


def test_settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def new_context(settings: Settings, role: Role, name: str, *, database_url: str, redis_url: str,
                db: Database) -> ProcessContext:
    """A ProcessContext over an open pool, as the runtime builds it (the coordinator not started)."""
    peers: dict[str, dict[str, Any]] = {}
    namespace = deployment_namespace(settings.redis_namespace, database_url, redis_url)
    coordinator = Coordinator(redis_url, namespace=namespace, process_name=name, role=role, host="test-host",
                              peers=peers, on_shutdown=lambda _reason: None)
    ctx = ProcessContext(settings=settings, role=role, process_name=name, database_url=database_url,
                         redis_url=redis_url, db=db, redis=redis_client(redis_url), queues=QueueProducer(redis_url),
                         events=EventRecorder(db, name), coordinator=coordinator, holder=holder_id(name),
                         namespace=namespace, peers=peers)
    ctx.ready.set()  # the components under test run as in a process that is serving
    return ctx


@contextlib.asynccontextmanager
async def process_context(database_url: str, redis_url: str, role: Role, *, instance_id: int = 0,
                          **settings: Any) -> AsyncIterator[ProcessContext]:
    config = test_settings(instance_id=instance_id, **settings)
    name = process_name_for(role, instance_id)
    db = Database(database_url, max_size=3, min_size=0, application_name=f"test-{name}")
    await db.open()
    ctx = new_context(config, role, name, database_url=database_url, redis_url=redis_url, db=db)
    try:
        yield ctx
    finally:
        await ctx.coordinator.stop()
        await ctx.queues.close()
        await ctx.redis.aclose()
        await db.close()
