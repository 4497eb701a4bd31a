"""Small process helpers shared by the embedded servers and the orchestrator."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable

import psutil

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` making the child receive ``sig`` when its parent dies (Linux).

    This is what makes "no orphan processes, ever" hold even when the parent is SIGKILLed.
    It runs after ``user=``/``group=`` are applied, so it survives the credential change.
    """
    parent = os.getpid()
    # Loaded here, in the parent: after fork only the calling thread exists, and a dlopen
    # in the child could wait forever on a loader lock another thread held at fork time.
    try:
        libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        libc = None

    def _preexec() -> None:
        if libc is None:
            return
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return _preexec


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it; another process could take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait for an arbitrary (non-child) pid to go away; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
