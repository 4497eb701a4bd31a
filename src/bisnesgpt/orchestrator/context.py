"""What every part of the orchestrator shares: the settings, the slots, the recorder, the clock.

It also relays statuses: what one child reports (or the supervisor observes about it) is
sent to every other child over its socket, and the supervisor's own observations are
published on ``process:status`` as well.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import PROCESS_STATUS
from bisnesgpt.health.events import Severity
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.children import Child, ChildStatus, StopReason
from bisnesgpt.orchestrator.recorder import RecordSink

ORCHESTRATOR = "orchestrator"
EXIT_GAVE_UP = 1

Clock = Callable[[], float]


@dataclass
class SupervisorContext:
    """The orchestrator's shared state; ``clock`` is monotonic seconds (a fake one in tests)."""

    settings: Settings
    children: list[Child]
    recorder: RecordSink
    clock: Clock = time.monotonic
    host: str = field(default_factory=socket.gethostname)
    stopping: bool = False  # shutting down: exits are expected, nothing restarts
    exit_code: int = 0  # EXIT_GAVE_UP once a fatal role was given up

    def event(self, process_name: str, event_type: str, data: Mapping[str, object],
              severity: Severity = "info") -> None:
        """Record a process event (written by the recorder thread, never blocking)."""
        self.recorder.event(process_name, event_type, data, severity)

    def broadcast(self, child: Child, status: ChildStatus, pid: int | None, *, reported: bool = False,
                  publish: bool = False, delay_ms: int | None = None, reason: StopReason | None = None) -> None:
        """Send ``child``'s status to the children over their sockets (the original's status_update
        IPC message); ``pid`` is its process's, for an exit the one just gone.

        ``reported``: the child said it itself, so it is not sent back to it. ``publish``: the
        supervisor observed it, and it goes on ``process:status`` too.
        """
        child.status = status
        update: protocol.StatusUpdate = {"processName": child.name, "role": child.spec.role, "status": status,
                                         "pid": pid, "ts": time.time()}
        if delay_ms is not None:
            update["delayMs"] = delay_ms
        if reason is not None:
            update["reason"] = reason
        data = protocol.encode(protocol.status_message(update))
        for other in self.children:
            if (reported and other is child) or other.link is None:
                continue
            with contextlib.suppress(OSError):  # full buffer (a hung child) or closing: skip it
                other.link.send(data)
        if publish:
            self.recorder.publish(PROCESS_STATUS, {**update, "host": self.host, "source": ORCHESTRATOR})

    def send_snapshot(self, newcomer: Child) -> None:
        """What a new child should know at once: every sibling's last status."""
        assert newcomer.link is not None
        for other in self.children:
            if other is newcomer:
                continue
            update: protocol.StatusUpdate = {"processName": other.name, "role": other.spec.role,
                                             "status": other.status, "pid": other.pid, "ts": time.time()}
            with contextlib.suppress(OSError):
                newcomer.link.send(protocol.encode(protocol.status_message(update)))
