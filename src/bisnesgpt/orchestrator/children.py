"""The orchestrator's records: a child slot, how a child exited, and its planned restart.

A ``Child`` is one slot (``api-1``, ``wwebjs``, …) that outlives the processes run in it:
it keeps the restart counts and the plan for the next start while no process runs.
``ExitInfo`` and ``RestartPlan`` are what the exit and restart events are made of.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict, TypeGuard, get_args

from bisnesgpt.config import Role, Settings
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.policy import RestartPolicy
from bisnesgpt.processes.context import process_name_for

if TYPE_CHECKING:
    from bisnesgpt.orchestrator.spawning import ChildProcess

# Where the slot is in its life, as the supervisor sees it.
ChildState = Literal["waiting", "starting", "online", "stopping", "given_up"]
# Why the supervisor asked a child to stop.
StopReason = Literal["shutdown", "hang", "memory"]
# Why a child is started again: it exited unasked (crash: non-zero or a signal; exit: 0),
# or the supervisor stopped it.
RestartReason = Literal["crash", "exit", "hang", "memory", "shutdown"]
# The status relayed to the siblings: a child's own word (ready | draining | stopped) or
# what the supervisor observed.
ChildStatus = Literal["waiting", "starting", "ready", "draining", "stopped", "stopping", "restarting", "given_up"]
CHILD_STATUSES: frozenset[str] = frozenset(get_args(ChildStatus))


def is_child_status(value: object) -> TypeGuard[ChildStatus]:
    """Whether a status read from a child's socket is one we know."""
    return isinstance(value, str) and value in CHILD_STATUSES


class ExitJson(TypedDict):
    """An exit as the ``crash``/``exit``/``give_up`` events record it."""

    signal: str | None
    exitCode: int | None
    pid: NotRequired[int]
    error: NotRequired[str]


class RestartEvent(TypedDict):
    """The data of a ``restart`` event."""

    reason: RestartReason
    attempt: int
    delayMs: int
    oldPid: int | None
    maxRestarts: int
    newPid: int
    restarts: int


@dataclass(frozen=True)
class ExitInfo:
    """How a child's process ended: an exit code or a signal, or a spawn that failed."""

    exit_code: int | None
    signal: str | None
    pid: int | None = None
    error: str | None = None  # set when the process could not even be spawned

    @classmethod
    def of_returncode(cls, code: int, pid: int | None = None) -> ExitInfo:
        """From ``Popen.returncode``: negative means killed by that signal."""
        if code < 0:
            name = str(-code)
            with contextlib.suppress(ValueError):
                name = signal.Signals(-code).name
            return cls(None, name, pid)
        return cls(code, None, pid)

    @classmethod
    def spawn_failed(cls, error: str) -> ExitInfo:
        """A process that never ran: ``Popen`` itself failed."""
        return cls(None, None, error=error)

    @property
    def crashed(self) -> bool:
        """Anything but a clean exit 0 (a signal, a non-zero code, a failed spawn)."""
        return self.exit_code != 0

    def how(self) -> str:
        """For the log line: ``signal SIGKILL`` or ``exit code 3``."""
        return f"signal {self.signal}" if self.signal else f"exit code {self.exit_code}"

    def text(self) -> str:
        """For ``process_health.last_error``: ``killed by SIGKILL``, the spawn error, or the code."""
        if self.signal:
            return f"killed by {self.signal}"
        if self.error:
            return self.error
        return f"exited with code {self.exit_code}"

    def as_json(self) -> ExitJson:
        """The event form: ``signal`` and ``exitCode``, plus ``pid`` / ``error`` when known."""
        body: ExitJson = {"signal": self.signal, "exitCode": self.exit_code}
        if self.pid is not None:
            body["pid"] = self.pid
        if self.error is not None:
            body["error"] = self.error
        return body


def describe_exit(code: int) -> ExitJson:
    """The JSON a ``Popen`` return code is recorded as (a signal name or an exit code)."""
    return ExitInfo.of_returncode(code).as_json()


@dataclass(frozen=True)
class RestartPlan:
    """A restart scheduled after an exit; it becomes the ``restart`` event once the child runs."""

    reason: RestartReason
    attempt: int  # restarts in a row, this one included
    delay_ms: int
    old_pid: int | None
    max_restarts: int

    def as_event(self, *, new_pid: int, restarts: int) -> RestartEvent:
        """The ``restart`` event of the process now started as ``new_pid``."""
        return {"reason": self.reason, "attempt": self.attempt, "delayMs": self.delay_ms, "oldPid": self.old_pid,
                "maxRestarts": self.max_restarts, "newPid": new_pid, "restarts": restarts}


@dataclass(frozen=True)
class ChildSpec:
    """Which role and instance a slot runs."""

    role: Role
    instance_id: int

    @property
    def name(self) -> str:
        """The process name (``api``, ``api-1``, …)."""
        return process_name_for(self.role, self.instance_id)


def child_specs(settings: Settings) -> list[ChildSpec]:
    """The slots to supervise: every api instance, the wwebjs and meta instances when enabled."""
    return [ChildSpec(role, i) for role in ("api", "wwebjs", "meta") for i in range(settings.instances_of(role))]


@dataclass
class Child:
    """One supervised slot: the process running in it (if any) and its restart bookkeeping."""

    spec: ChildSpec
    policy: RestartPolicy
    state: ChildState = "waiting"
    process: ChildProcess | None = None
    link: socket.socket | None = None
    decoder: protocol.LineDecoder = field(default_factory=protocol.LineDecoder)
    started_at: float = 0.0
    ready_at: float | None = None  # when it reported ready: uptime counts as stable from here
    first_ping_at: float | None = None
    last_ping: float = 0.0
    restarts: int = 0  # restarts of this slot since the orchestrator started
    in_a_row: int = 0  # restarts since the child last stayed up min_uptime
    next_start_at: float = 0.0
    stop_reason: StopReason | None = None  # why we asked it to stop
    kill_at: float | None = None
    pending_restart: RestartPlan | None = None
    status: ChildStatus = "waiting"  # the last status it reported (or we observed), relayed to siblings

    @property
    def name(self) -> str:
        """The slot's process name."""
        return self.spec.name

    @property
    def pid(self) -> int | None:
        """The pid of the process running in the slot, if one does."""
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        """Whether a process runs in the slot and has not exited."""
        return self.process is not None and self.process.poll() is None

    def close_link(self) -> None:
        """Close our end of the child's socket (it closed its end, or it is gone)."""
        if self.link is not None:
            with contextlib.suppress(OSError):
                self.link.close()
            self.link = None

    def release(self) -> None:
        """Release what a dead child held: its socket, its process group, its output pumps."""
        self.close_link()
        if self.process is not None:
            self.process.kill_group()  # anything it left in its group
            self.process.release()
        self.process = None
        self.kill_at = None
