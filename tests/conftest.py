"""Fixtures shared by every test layer.

PostgreSQL/Redis come from TEST_DATABASE_URL / TEST_REDIS_URL when set (CI uses the
machine's servers), otherwise embedded servers are started once per session. Each test
gets its own database (cloned from a migrated template) and its own Redis logical db.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from bisnesgpt.db.migrate import migrate
from bisnesgpt.db.pool import Database
from tests.support import procs
from tests.support.servers import (
    postgres_server,
    redis_database,
    redis_server,
    unique_name,
    with_database,
)

FIRST_PROC = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[FIRST_PROC] = len(procs.SPAWNED)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed test's report ends with the logs of the product processes it ran (CI keeps nothing else)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" or not report.failed:
        return
    first = item.stash.get(FIRST_PROC, len(procs.SPAWNED))
    for index, proc in enumerate(procs.SPAWNED):
        if index >= first or proc.popen.poll() is None:
            report.sections.append((f"log {proc.log_path}", proc.tail()))


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path: Path) -> Iterator[None]:
    """After everything else of a test is torn down, nothing it spawned in its directory runs.

    A leftover engine would keep consuming the next tests' queues (most lease Redis db 1).
    """
    yield
    deadline = time.monotonic() + 5  # a process told to stop may take a moment to exit
    while (left := procs.processes_under(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        described = []
        for proc in left:
            with contextlib.suppress(psutil.Error):
                described.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
                proc.kill()
        pytest.fail(f"processes left running after the test: {described}")


@pytest.fixture(scope="session")
def services_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def pg_server_url(services_tmp: Path) -> Iterator[str]:
    with postgres_server(services_tmp) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server_url(services_tmp: Path) -> Iterator[str]:
    with redis_server(services_tmp) as url:
        yield url


async def create_database(server_url: str, name: str, template: str | None = None) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        for attempt in range(50):
            try:
                await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
                break
            except asyncpg.ObjectInUseError:
                # The template is briefly "in use" while another test clones it.
                await asyncio.sleep(0.05 * (attempt + 1))
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database(pg_server_url: str) -> AsyncIterator[str]:
    """A migrated database to clone per test (CREATE DATABASE … TEMPLATE is fast)."""
    name = unique_name("bgpt_tmpl")
    url = await create_database(pg_server_url, name)
    await migrate(url)
    yield name
    await drop_database(pg_server_url, name)


@pytest.fixture
async def database_url(pg_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A freshly migrated database of this test's own."""
    name = unique_name("bgpt_test")
    url = await create_database(pg_server_url, name, template=template_database)
    yield url
    await drop_database(pg_server_url, name)


@pytest.fixture
async def empty_database_url(pg_server_url: str) -> AsyncIterator[str]:
    """An empty database (no migrations applied)."""
    name = unique_name("bgpt_empty")
    url = await create_database(pg_server_url, name)
    yield url
    await drop_database(pg_server_url, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, max_size=5)
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A flushed Redis logical database of this test's own."""
    with redis_database(redis_server_url) as url:
        yield url
