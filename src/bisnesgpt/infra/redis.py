"""Redis clients: one factory so every process gets the same timeouts and retry policy.

A Redis URL is either a plain ``redis://``/``rediss://`` server or a Sentinel-managed
master, ``redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/<db>]``
(``?sentinel_password=…`` when the sentinels need their own password). Every factory here
understands both: a Sentinel client asks the sentinels for the current master when it
connects, and a connection to a master that was demoted fails (``READONLY`` is turned into
a connection error by redis-py), so the retry that follows reconnects to the new master.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from bisnesgpt.core.service_urls import SentinelTarget, sentinel_target

# Retry quickly and for a long time: after a Redis restart, work resumes within ~1 s of the
# server coming back instead of waiting out a long exponential backoff.
FAST_RECONNECT_ATTEMPTS = 10_000


def fast_retry() -> Retry:
    """The retry policy of clients that must ride out a Redis restart."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), FAST_RECONNECT_ATTEMPTS,
                 supported_errors=(ConnectionError, TimeoutError, BusyLoadingError))


class MasterFollowingConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that always reconnects to the *current* master.

    redis-py (7.4) reconnects a dropped connection inside ``send_packed_command`` straight to
    the address it had, skipping the sentinel lookup of ``connect()``; a single-connection
    client (bullmq's) then retries the dead master forever after a failover. Reconnecting
    through ``connect()`` asks the sentinels first.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send, (re)connecting first through the sentinel lookup when not connected."""
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)


def _sentinel(target: SentinelTarget) -> Sentinel:
    # Sentinels answer in milliseconds; a dead one must not stall the discovery of the master.
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    return Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]


def _master_kwargs(target: SentinelTarget) -> dict[str, Any]:
    return {"db": target.db, "username": target.username, "password": target.password,
            "connection_class": MasterFollowingConnection}


def _from_url(url: str, **kwargs: Any) -> aioredis.Redis:
    """``Redis.from_url`` that also understands ``redis+sentinel://``."""
    target = sentinel_target(url)
    if target is None:
        client: aioredis.Redis = aioredis.Redis.from_url(url, **kwargs)
        return client
    master: aioredis.Redis = _sentinel(target).master_for(target.master, redis_class=aioredis.Redis,
                                                          **_master_kwargs(target), **kwargs)
    return master


def redis_client(url: str, *, name: str | None = None, retry: bool = False) -> aioredis.Redis:
    """A client for ordinary commands (fails fast unless ``retry``); decode_responses on."""
    client: aioredis.Redis = _from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        socket_keepalive=True,
        health_check_interval=15,
        client_name=name,
        retry=fast_retry() if retry else Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
    return client


def pubsub_client(url: str, *, name: str | None = None) -> aioredis.Redis:
    """A client for one long-lived subscription: no retries inside redis-py (a silent
    reconnect would hide a gap in which messages were missed), a dead connection noticed
    within seconds (health checks), no read timeout while waiting for messages."""
    client: aioredis.Redis = _from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=None,
        socket_keepalive=True,
        health_check_interval=5,
        client_name=name,
        retry=Retry(NoBackoff(), 0),
    )
    return client


class ConnectionKwargs(TypedDict):
    """redis-py connection options, as a dict for libraries that build their own client."""

    host: str
    port: int
    db: int
    password: str | None
    username: str | None
    socket_timeout: float | None
    socket_connect_timeout: float
    socket_keepalive: bool
    ssl: NotRequired[bool]


class PoolKwargs(TypedDict):
    """A ready connection pool, for libraries that build their own client from a dict
    (redis-py's ``Redis(connection_pool=…)`` ignores the host/port options beside it)."""

    connection_pool: SentinelConnectionPool


def connection_kwargs(url: str) -> ConnectionKwargs | PoolKwargs:
    """Keyword arguments for libraries (bullmq) that build their own client from a dict.

    ``socket_timeout=None``: a 5 s socket timeout equal to the worker's 5 s blocking wait
    makes idle workers stop picking up jobs. A Sentinel URL gives a pool of connections to
    the current master (the same options), which every client built from it shares.
    """
    target = sentinel_target(url)
    if target is not None:
        pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            target.master, _sentinel(target), decode_responses=True, socket_timeout=None,
            socket_connect_timeout=2.0, socket_keepalive=True, **_master_kwargs(target))
        return {"connection_pool": pool}
    parts = urlsplit(url)
    kwargs: ConnectionKwargs = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "db": int(parts.path.lstrip("/") or 0),
        "password": unquote(parts.password) if parts.password else None,
        "username": unquote(parts.username) if parts.username else None,
        "socket_timeout": None,
        "socket_connect_timeout": 2.0,
        "socket_keepalive": True,
    }
    if parts.scheme == "rediss":
        kwargs["ssl"] = True
    return kwargs
