"""PostgreSQL and Redis for tests: the machine's (TEST_DATABASE_URL / TEST_REDIS_URL) or embedded.

Every test database is a fresh ``CREATE DATABASE`` (from a migrated template), every test
Redis is its own logical database (a lock key per index), so concurrent test runs against
one shared server never see each other's data.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres
from bisnesgpt.infra.embedded_redis import EmbeddedRedis


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


@contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """URL of a server where tests may CREATE DATABASE (maintenance db in the path)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp / "pg", database="postgres")
    handle = server.ensure()
    try:
        yield handle.url
    finally:
        server.stop()


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp / "redis")
    handle = server.ensure()
    try:
        yield handle.url
    finally:
        server.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


LOCK_PREFIX = "bisnesgpt:test:dblock:"


@contextmanager
def redis_database(server_url: str, ttl: int = 3600) -> Iterator[str]:
    """Lease one of the logical databases 1..15 of a shared Redis; flushed before use."""
    parts = urlsplit(server_url)
    base = urlunsplit(parts._replace(path="/0"))
    admin = redis.Redis.from_url(base)
    token = secrets.token_hex(8)
    deadline = time.monotonic() + 120
    try:
        while True:
            for index in range(1, 16):
                if admin.set(f"{LOCK_PREFIX}{index}", token, nx=True, ex=ttl):
                    url = urlunsplit(parts._replace(path=f"/{index}"))
                    client = redis.Redis.from_url(url)
                    client.flushdb()
                    client.close()
                    try:
                        yield url
                    finally:
                        if admin.get(f"{LOCK_PREFIX}{index}") == token.encode():
                            admin.delete(f"{LOCK_PREFIX}{index}")
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("no free Redis logical database for tests (1..15 all leased)")
            time.sleep(0.2)
    finally:
        admin.close()
