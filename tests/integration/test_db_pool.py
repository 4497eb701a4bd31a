"""The pool boundary: connections that break mid-operation are dropped, never reused."""

from __future__ import annotations

import asyncpg
import pytest

from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.db.pool import Database

pytestmark = pytest.mark.integration


async def test_connections_killed_mid_operation_become_unavailable_and_are_replaced(database_url: str) -> None:
    db = Database(database_url, max_size=3, min_size=3)
    await db.open()
    observer = Database(database_url, max_size=1)
    await observer.open()
    try:
        # Fill the pool, then kill every backend of it (what a PostgreSQL restart does).
        pids = set()
        for _ in range(3):
            async with db.connection() as conn:
                pids.add(await conn.fetchval("SELECT pg_backend_pid()"))

        async def killed_mid_transaction() -> None:
            async with db.transaction() as conn:
                await conn.fetchval("SELECT 1")
                await observer.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
                                       list(pids))
                await conn.fetchval("SELECT pg_sleep(0.01)")  # the connection died under this query

        with pytest.raises(DatabaseUnavailable):
            await killed_mid_transaction()
        # The broken connection was dropped and the idle (dead) ones expired: the very next
        # operations work, none of them fails once per dead pooled connection.
        for _ in range(6):
            assert await db.fetchval("SELECT 1") == 1
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") not in pids
    finally:
        await observer.close()
        await db.close()


async def test_a_connection_left_mid_operation_answers_unavailable_and_is_not_reused(database_url: str) -> None:
    """asyncpg's "cannot switch to state …; another operation is in progress" (seen after a
    PostgreSQL restart) is an unavailable database (503), never a 500, and that connection goes."""
    db = Database(database_url, max_size=1, min_size=1)
    await db.open()
    try:
        async with db.connection() as conn:
            first_pid = await conn.fetchval("SELECT pg_backend_pid()")

        async def stuck_connection() -> None:
            async with db.connection():
                raise asyncpg.exceptions.InternalClientError(
                    "cannot switch to state 12; another operation (2) is in progress")

        with pytest.raises(DatabaseUnavailable):
            await stuck_connection()
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != first_pid
    finally:
        await db.close()
