"""Fixtures for modules whose api proves phone claims: the Cloud API emulator and an api pointed at it.

The emulator answers both profiles (Graph's Bearer routes and 360dialog's key routes), so
connecting and onboarding phones are proven as in production. Import ``api`` and ``emulator``
into a test module (or a conftest) to use them instead of the plain e2e ``api``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bisnesgpt.db.pool import Database
from tests.support.meta import EmulatorProc
from tests.support.pipeline import ApiServer, running_api


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
    """The module's api process on its database and Redis, asking the emulator about phone claims."""
    async with running_api(tmp_path_factory.mktemp("api"), module_db[0], module_redis,
                           META_GRAPH_URL=emulator.url, D360_BASE_URL=emulator.url) as server:
        yield server
