"""Fixtures of the security tests: the e2e modules' database and Redis, the Cloud API emulator
(both profiles: it answers Graph's Bearer routes and 360dialog's key routes) and an api process
pointed at it, so that phone claims are proven as in production."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bisnesgpt.db.pool import Database
from tests.e2e.conftest import module_db, module_redis
from tests.support.meta import EmulatorProc
from tests.support.pipeline import ApiServer

__all__ = ["api", "emulator", "module_db", "module_redis"]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProc]:
    """One Cloud API emulator for the module (tests register the numbers they claim)."""
    proc = EmulatorProc(tmp_path_factory.mktemp("emulator"), app_secret=None)
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database], module_redis: str,
              emulator: EmulatorProc) -> AsyncIterator[ApiServer]:
    """One real api process on the module's database and Redis, asking the emulator about claims."""
    server = ApiServer(tmp_path_factory.mktemp("api"), module_db[0], module_redis, META_GRAPH_URL=emulator.url,
                       D360_BASE_URL=emulator.url)
    try:
        yield await server.start()
    finally:
        server.stop()
