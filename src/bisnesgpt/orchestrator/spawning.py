"""Starting a child: its command, environment, socket, process group and output pumps.

The supervisor sees a started child only through ``ChildProcess`` (poll, signal, reap),
and starts one only through a ``Launcher``, so its rules can be driven by fakes in tests.
``ProcessLauncher`` is the real one: ``python -m bisnesgpt run <role>`` in a new session
(a terminal's Ctrl-C reaches only the orchestrator), with the parent-death signal set and
one end of a ``socketpair`` passed as ``BISNESGPT_SUPERVISOR_FD``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

import psutil

from bisnesgpt.config import Role, Settings
from bisnesgpt.infra.process_utils import die_with_parent
from bisnesgpt.orchestrator.children import ChildSpec
from bisnesgpt.orchestrator.output import OutputPump


class ChildProcess(Protocol):
    """What the supervisor does with a started child's process."""

    @property
    def pid(self) -> int:
        """The process id (also its process group id: it leads a session of its own)."""
        ...

    def poll(self) -> int | None:
        """The return code once it has exited (negative: killed by that signal), else None."""
        ...

    def wait(self) -> int:
        """Block until it has exited; its return code."""
        ...

    def terminate(self) -> None:
        """SIGTERM: begin a graceful stop (nothing happens if it is already gone)."""
        ...

    def kill_group(self) -> None:
        """SIGKILL its whole process group (nothing happens if it is already gone)."""
        ...

    def release(self) -> None:
        """After it exited: let go of its output (the pumps finish copying)."""
        ...


@dataclass(frozen=True)
class Launched:
    """A child just started: its process and our end of its socket."""

    process: ChildProcess
    link: socket.socket


class Launcher(Protocol):
    """Starts the process of a slot; raises ``OSError`` when it cannot."""

    def launch(self, spec: ChildSpec) -> Launched:
        """Start ``spec``'s role and return it with our end of its socket."""
        ...


def role_command(role: Role) -> list[str]:
    """The command a child runs: this interpreter, ``-m bisnesgpt run <role>``."""
    return [sys.executable, "-m", "bisnesgpt", "run", role]


class PopenChild:
    """A child started with ``subprocess.Popen``, with its stdout/stderr pumps."""

    def __init__(self, process: subprocess.Popen[bytes], pumps: Sequence[OutputPump]) -> None:
        self._process = process
        self._pumps = list(pumps)

    @property
    def pid(self) -> int:
        """The child's pid (and process group id)."""
        return self._process.pid

    def poll(self) -> int | None:
        """The return code, or None while it runs."""
        return self._process.poll()

    def wait(self) -> int:
        """Reap it; its return code."""
        return self._process.wait()

    def terminate(self) -> None:
        """SIGTERM to the child itself (it stops its own components in order)."""
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL to the child's group: nothing it started survives."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)

    def release(self) -> None:
        """Wait (briefly) for the pumps to copy the last of its output."""
        for pump in self._pumps:
            pump.join(timeout=1)
        self._pumps = []


class ProcessLauncher:
    """Starts role processes for the orchestrator (see the module docstring)."""

    def __init__(self, settings: Settings, *, database_url: str, redis_url: str,
                 command: Callable[[Role], list[str]] = role_command, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.command = command
        self.env = dict(env or {})

    def child_env(self, spec: ChildSpec, link_fd: int) -> dict[str, str]:
        """Our environment (with ``env`` over it) plus what the child must know: its role and
        instance, the servers (resolved here, so embedded ones are shared), its socket and the key."""
        env = {**os.environ, **self.env}
        env.update({
            "PROCESS_NAME": spec.role,
            "INSTANCE_ID": str(spec.instance_id),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "BISNESGPT_SUPERVISOR_FD": str(link_fd),
            "PYTHONUNBUFFERED": "1",
        })
        if self.settings.encryption_key is not None:
            env["ENCRYPTION_KEY"] = self.settings.encryption_key.get_secret_value()
        return env

    def launch(self, spec: ChildSpec) -> Launched:
        """Spawn the child with one end of a new socketpair; ours is non-blocking."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent_end.setblocking(False)
        try:
            process = subprocess.Popen(
                self.command(spec.role),
                env=self.child_env(spec, child_end.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        except OSError:
            parent_end.close()
            raise
        finally:
            child_end.close()
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = [self._pump(spec, process.stdout, "out"), self._pump(spec, process.stderr, "error")]
        return Launched(PopenChild(process, pumps), parent_end)

    def _pump(self, spec: ChildSpec, stream: IO[bytes], kind: str) -> OutputPump:
        pump = OutputPump(stream, self.settings.log_dir / f"{spec.role}-{kind}.log", spec.name,
                          echo=sys.stdout if kind == "out" else sys.stderr)
        pump.start()
        return pump


def tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants, in bytes (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total
