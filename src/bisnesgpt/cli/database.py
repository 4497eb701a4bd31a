"""Running one async database operation from a command (tenancy and phone commands)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from bisnesgpt.cli.common import cli_errors, settings_or_exit
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")


class SchemaMissing(BisnesgptError):
    """The command needs tables the migrations have not created yet."""


def run_with_database(operation: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Settings, PostgreSQL (configured or embedded), one short-lived pool, the operation."""
    from bisnesgpt.infra.services import ensure_services

    settings = settings_or_exit()
    logging.basicConfig(level=logging.WARNING)
    with cli_errors():
        services = ensure_services(settings, need_redis=False)
        try:
            return asyncio.run(_run(services.database_url, settings, operation))
        finally:
            services.close()
    raise AssertionError("unreachable")  # pragma: no cover


async def _run(url: str, settings: Settings, operation: Callable[[Database, Settings], Awaitable[T]]) -> T:
    db = Database(url, max_size=2, min_size=0, application_name="bisnesgpt-cli",
                  connect_timeout=settings.database_connect_timeout)
    await db.open()
    try:
        return await operation(db, settings)
    except asyncpg.UndefinedTableError as exc:
        raise SchemaMissing("the database has no schema yet: run `bisnesgpt migrate` first") from exc
    finally:
        await db.close()


async def announce(settings: Settings, database_url: str, send: Callable[[Redis, str], Awaitable[bool]]) -> bool:
    """Run ``send(client, namespace)`` on the deployment's Redis, best effort: False where none answers.

    Commands tell the running processes of a change this way (a cached route or key to drop);
    where the message cannot be delivered the processes see the change when their cache expires.
    """
    from bisnesgpt.coordination.channels import deployment_namespace
    from bisnesgpt.infra.redis import redis_client
    from bisnesgpt.infra.services import embedded_redis

    url = settings.effective_redis_url or embedded_redis(settings).running_url()
    if url is None:
        return False
    client = redis_client(url, name="bisnesgpt:cli")
    try:
        return await send(client, deployment_namespace(settings.redis_namespace, database_url, url))
    finally:
        await client.aclose()
