"""One asyncpg pool per process, opened after the process starts (never at import).

Connection failures are translated into ``DatabaseUnavailable`` at this boundary so callers
(and the HTTP layer) never see asyncpg's or the OS's exception types.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict, cast

import asyncpg
from prometheus_client import Counter

from bisnesgpt.core.errors import DatabaseUnavailable, Overloaded
from bisnesgpt.db.queries import load_queries

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.db")

# Errors that mean "the server is not reachable / went away", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08, e.g. ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin/crash shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,  # e.g. "connection is closed"
    # A pooled connection left mid-operation by a server restart: "cannot switch to state …;
    # another operation is in progress". Terminated below, so never handed out again.
    asyncpg.exceptions.InternalClientError,
)
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *CONNECTION_ERRORS)

POOL_REFUSED = Counter("bisnesgpt_pool_admission_refused_total",
                       "Callers refused (503 Overloaded) after waiting ADMISSION_POOL_WAIT for a busy database pool")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    if conn.get_server_version() >= (14, 0):
        # A statement that is its own transaction (the one-statement accept) commits when it
        # ends even if its process died meanwhile; with this check the server notices the
        # dead client while the statement runs and rolls it back, as it does an open
        # transaction (PostgreSQL 14+; the same setting on every pooled connection). Every
        # second, in milliseconds.
        await conn.execute("SET client_connection_check_interval = 1000")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (one round trip per release saved).

    asyncpg still rolls back a transaction left open and drops listeners before calling
    this; what the skipped ``RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()``
    would undo never happens on pooled connections: session settings, LISTEN and advisory
    locks only ever use dedicated connections (``asyncpg.connect``), and cursors live in
    transactions. Keep it that way: a pooled connection must not leave session state.
    """


class PoolStats(TypedDict):
    """Connections of a pool: open, idle among them, and the most it opens."""

    size: int
    idle: int
    max: int


class Database:
    """A lazily opened asyncpg pool with connection errors mapped to the product's errors."""

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int,
        min_size: int = 1,
        application_name: str = "bisnesgpt",
        connect_timeout: float = 5.0,
        command_timeout: float | None = 30.0,
        pool_wait: float | None = None,
    ) -> None:
        """``pool_wait``: admission control. A caller without its own timeout that finds every
        connection busy waits at most this long, then gets ``Overloaded`` (503, retry) instead of
        queueing for up to ``connect_timeout``; None waits as before (engines: work, not requests)."""
        self.dsn = dsn
        self.pool_wait = pool_wait
        self.max_size = max_size
        self.min_size = min(min_size, max_size)
        self.application_name = application_name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool (a no-op once open); DatabaseUnavailable when the server cannot be reached."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                init=_init_connection,
                reset=_keep_session,
                server_settings={"application_name": self.application_name},
                # Connections that survive a server restart are dead; recycle idle ones.
                max_inactive_connection_lifetime=60.0,
            )
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool gracefully within ``timeout``, else terminate its connections."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout)
        except _CLOSE_ERRORS:
            pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool (DatabaseUnavailable before ``open``)."""
        if self._pool is None:
            raise DatabaseUnavailable("database pool is not open")
        return self._pool

    @property
    def is_open(self) -> bool:
        """Whether ``open`` succeeded and ``close`` has not been called."""
        return self._pool is not None

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """Acquire a connection; connection-level failures become DatabaseUnavailable.

        A connection that breaks mid-operation is terminated, never handed back to the pool,
        and the pool's other connections are expired (after a server restart they are all
        dead): the next acquire opens fresh ones instead of failing once per idle connection.
        """
        pool = self.pool
        pool_wait = self.pool_wait
        busy = (timeout is None and pool_wait is not None and pool.get_idle_size() == 0
                and pool.get_size() >= self.max_size)
        try:
            conn = await pool.acquire(timeout=pool_wait if busy else (timeout or self.connect_timeout))
        except CONNECTION_ERRORS as exc:
            if busy and pool_wait is not None and isinstance(exc, asyncio.TimeoutError):
                POOL_REFUSED.inc()
                raise Overloaded(f"all {self.max_size} database connections of this process stayed busy for "
                                 f"{pool_wait * 1000:.0f} ms; retry after the Retry-After seconds, or run more "
                                 "instances (API_INSTANCES) or a larger pool (DATABASE_POOL_API_MAX)") from exc
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        try:
            yield cast(asyncpg.Connection, conn)
        except CONNECTION_ERRORS as exc:
            with contextlib.suppress(Exception):  # asyncpg may have detached it already
                conn.terminate()
            if not isinstance(exc, asyncio.TimeoutError):
                await pool.expire_connections()
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        finally:
            try:
                await pool.release(conn)
            except CONNECTION_ERRORS as exc:  # already broken: the pool replaces it
                log.debug("releasing a broken connection: %r", exc)

    @asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction (committed when the block ends without an error)."""
        async with self.connection(timeout) as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """All rows of ``query`` on a pooled connection."""
        async with self.connection() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row of ``query`` (None: no row)."""
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row of ``query``."""
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        """Run ``query``; its status tag (``UPDATE 3``)."""
        async with self.connection() as conn:
            return str(await conn.execute(query, *args))

    async def ping(self, timeout: float = 2.0) -> None:
        """One round trip within ``timeout`` (for /health); raises when the server is away."""
        async with self.connection(timeout) as conn:
            await conn.fetchval(SQL.ping, timeout=timeout)

    def stats(self) -> PoolStats:
        """The pool's connection counts now (zeros before ``open``)."""
        if self._pool is None:
            return {"size": 0, "idle": 0, "max": self.max_size}
        return {"size": self._pool.get_size(), "idle": self._pool.get_idle_size(), "max": self.max_size}
