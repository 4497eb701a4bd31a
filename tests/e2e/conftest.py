"""Fixtures shared by the e2e modules that run one real api process for the whole module.

``module_db`` (a migrated database of the module's own, with a pool), ``module_redis`` (a
leased Redis logical db) and ``api`` (``bisnesgpt run api`` on both). A module that needs its
own kind of api defines an ``api`` fixture of its own, which wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bisnesgpt.db.pool import Database
from tests.conftest import create_database, drop_database
from tests.support.pipeline import ApiServer
from tests.support.servers import redis_database, unique_name


@pytest.fixture(scope="module")
async def module_db(pg_server_url: str, template_database: str) -> AsyncIterator[tuple[str, Database]]:
    """(url, open pool) of a freshly migrated database shared by the module's tests."""
    name = unique_name("bgpt_module")
    url = await create_database(pg_server_url, name, template=template_database)
    db = Database(url, max_size=5)
    await db.open()
    yield url, db
    await db.close()
    await drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
def module_redis(redis_server_url: str) -> Iterator[str]:
    """A flushed Redis logical database shared by the module's tests."""
    with redis_database(redis_server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
              module_redis: str) -> AsyncIterator[ApiServer]:
    """One real api process on the module's database and Redis."""
    server = ApiServer(tmp_path_factory.mktemp("api"), module_db[0], module_redis)
    try:
        yield await server.start()
    finally:
        server.stop()
