"""Redis clients: one factory so every process gets the same timeouts and retry policy."""

from __future__ import annotations

from typing import NotRequired, TypedDict
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

# Retry quickly and for a long time: after a Redis restart, work resumes within ~1 s of the
# server coming back instead of waiting out a long exponential backoff.
FAST_RECONNECT_ATTEMPTS = 10_000


def fast_retry() -> Retry:
    """The retry policy of clients that must ride out a Redis restart."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), FAST_RECONNECT_ATTEMPTS,
                 supported_errors=(ConnectionError, TimeoutError, BusyLoadingError))


def redis_client(url: str, *, name: str | None = None, retry: bool = False) -> aioredis.Redis:
    """A client for ordinary commands (fails fast unless ``retry``); decode_responses on."""
    client: aioredis.Redis = aioredis.Redis.from_url(
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
    client: aioredis.Redis = aioredis.Redis.from_url(
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


def connection_kwargs(url: str) -> ConnectionKwargs:
    """Keyword arguments for libraries (bullmq) that build their own client from a dict.

    ``socket_timeout=None``: a 5 s socket timeout equal to the worker's 5 s blocking wait
    makes idle workers stop picking up jobs.
    """
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
