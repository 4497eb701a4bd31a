"""One orchestrator per data directory: a lock file held for the orchestrator's life.

``DATA_DIR/orchestrator.lock`` is locked (``flock``, exclusive, not waiting) before anything
else starts — embedded servers, migrations, children — and holds the pid of its holder. A
second ``bisnesgpt start`` on the same directory is refused with one line naming that pid.
The kernel releases the lock when the holder exits in any way (kill -9 included), so a
stale file never blocks a start; the file itself stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from bisnesgpt.core.errors import BisnesgptError

LOCK_FILE = "orchestrator.lock"


class OrchestratorRunning(BisnesgptError):
    """Another orchestrator holds the data directory's lock."""


class OrchestratorLock:
    """The exclusive lock on ``<data_dir>/orchestrator.lock`` (``acquire`` / ``release``)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid; ``OrchestratorRunning`` naming the holder when it is taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OrchestratorRunning(
                f"an orchestrator (pid {holder}) is already running on {self.path.parent.resolve()}; "
                "stop it first, or give this one another DATA_DIR") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (the file stays, empty of meaning once unlocked)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OrchestratorLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
