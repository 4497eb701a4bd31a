"""Running one async database operation from a command (tenancy and phone commands)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from bisnesgpt.cli.common import cli_errors, settings_or_exit
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database

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
