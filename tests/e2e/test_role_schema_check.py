"""A role started on a database the migrations have not reached refuses, in one line.

``bisnesgpt start`` migrates before spawning; PM2 (and anyone running ``bisnesgpt run``
by hand) does not, and every component then failed on missing tables with tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from bisnesgpt.db.migrate import SQL, discover, migrate
from tests.support.procs import Proc, free_port
from tests.support.wwebjs import role_env, start_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def refused(tmp_path: Path, database_url: str, redis_url: str, name: str) -> str:
    proc = Proc(["run", "api"], cwd=tmp_path, env=role_env(database_url, redis_url, API_PORT=str(free_port())),
                log_name=name)
    assert proc.wait(60) == 2, proc.output()
    output = proc.output()
    assert "Traceback" not in output, output
    return output


async def test_an_unmigrated_database_is_refused_with_one_line(
        tmp_path: Path, empty_database_url: str, redis_url: str) -> None:
    migrations = discover()
    output = refused(tmp_path, empty_database_url, redis_url, "api-empty")
    assert f"the database is not migrated ({len(migrations)} pending: {migrations[0].filename}," in output
    assert "run `bisnesgpt migrate` first" in output

    # One migration behind (code newer than the database): refused, naming it.
    await migrate(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", migrations[-1].version)
    finally:
        await conn.close()
    output = refused(tmp_path, empty_database_url, redis_url, "api-behind")
    assert f"(1 pending: {migrations[-1].filename})" in output

    # Up to date again (the migration itself never left): it runs.
    last = migrations[-1]
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(SQL.record_migration, last.version, last.name, last.checksum)
    finally:
        await conn.close()
    api = start_api(tmp_path, empty_database_url, redis_url, name="api-migrated")
    assert api.stop() == 0
