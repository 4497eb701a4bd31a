"""Embedded PostgreSQL and Valkey: start once, reuse, survive kill -9, die with their owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest
import redis

from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres
from bisnesgpt.infra.embedded_redis import EmbeddedRedis
from bisnesgpt.infra.process_utils import wait_for_exit
from tests.support.servers import unique_name

pytestmark = pytest.mark.integration


def _psql(url: str, sql: str) -> str:
    from bisnesgpt.infra.embedded_postgres import _bin_dir

    result = subprocess.run([str(_bin_dir() / "psql"), url, "-tAc", sql], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


def test_postgres_starts_reuses_and_keeps_data(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "postgres")
    first = server.ensure()
    try:
        assert first.started_here
        _psql(first.url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')")
        again = EmbeddedPostgres(tmp_path / "postgres").ensure()
        assert not again.started_here and again.pid == first.pid and again.url == first.url
    finally:
        assert server.stop()
    assert server.running() is None
    restarted = server.ensure()
    try:
        assert restarted.started_here
        assert _psql(restarted.url, "SELECT v FROM kept") == "hello"
    finally:
        server.stop()


def test_postgres_recovers_from_kill_9(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "postgres")
    handle = server.ensure()
    _psql(handle.url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('durable')")
    os.kill(handle.pid, signal.SIGKILL)
    assert wait_for_exit(handle.pid, 10)
    assert (tmp_path / "postgres" / "postmaster.pid").exists()  # stale now; orphaned backends may linger
    restarted = server.ensure()
    try:
        assert restarted.started_here and restarted.pid != handle.pid
        assert _psql(restarted.url, "SELECT v FROM kept") == "durable"
    finally:
        server.stop()


def test_valkey_keeps_data_with_aof_and_recovers_from_kill_9(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    handle = server.ensure()
    client = redis.Redis.from_url(handle.url)
    client.set("kept", "yes")
    assert client.config_get("appendonly")["appendonly"] == "yes"
    client.close()
    assert server.stop()
    handle = server.ensure()
    assert handle.started_here
    client = redis.Redis.from_url(handle.url)
    assert client.get("kept") == b"yes"
    client.close()
    os.kill(handle.pid, signal.SIGKILL)
    assert wait_for_exit(handle.pid, 10)
    again = server.ensure()
    try:
        assert again.started_here and again.pid != handle.pid
        client = redis.Redis.from_url(again.url)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        server.stop()


OWNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres
    from bisnesgpt.infra.embedded_redis import EmbeddedRedis
    pg = EmbeddedPostgres(Path(sys.argv[1]) / "postgres").ensure()
    rd = EmbeddedRedis(Path(sys.argv[1]) / "redis").ensure()
    print(pg.pid, rd.pid, flush=True)
    time.sleep(600)
""")


def test_owned_servers_die_with_a_killed_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pg_pid, redis_pid = (int(x) for x in owner.stdout.readline().split())
    owner.kill()
    owner.wait()
    assert wait_for_exit(pg_pid, 30), "PostgreSQL outlived its SIGKILLed owner"
    assert wait_for_exit(redis_pid, 30), "Valkey outlived its SIGKILLed owner"
    # ...and the next owner starts cleanly on the same data.
    server = EmbeddedPostgres(tmp_path / "postgres")
    handle = server.ensure()
    try:
        assert handle.started_here
    finally:
        server.stop()


async def test_the_database_name_reaches_psql_quoted(tmp_path: Path) -> None:
    # Its own embedded server (trust-auth superuser on 127.0.0.1), whatever the suite runs on.
    name = unique_name("""bgpt 'quoted' "name";""")  # a literal and an identifier to quote
    server = EmbeddedPostgres(tmp_path / "postgres", database=name)
    handle = server.ensure()
    try:
        server.ensure_database(handle.port)  # exists: nothing to do
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{handle.port}/postgres")
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
        finally:
            await conn.close()
    finally:
        server.stop()
