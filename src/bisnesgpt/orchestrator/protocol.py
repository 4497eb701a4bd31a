"""The line protocol between the orchestrator and each child: JSON objects, one per line.

The orchestrator creates a ``socketpair`` per child and passes one end (its number in
``BISNESGPT_SUPERVISOR_FD``). Messages:

child -> orchestrator
    ``{"type": "heartbeat", "ts": …}``            sent from the child's event loop every
                                                  ``ping_interval``; silence = hung
    ``{"type": "status_update", "status": …}``    ready | draining | stopped (+ pid, …)

orchestrator -> child
    ``{"type": "status_update", "processName": …, "role": …, "status": …, "pid": …}``
        a sibling's status, broadcast to every other child (the original's IPC message)
    ``{"type": "shutdown", "reason": …}``         begin a graceful stop (like SIGTERM)

End of file on either side means the other side is gone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import NotRequired, TypedDict

from bisnesgpt.core.jsontypes import JsonObject

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
STATUS_UPDATE = "status_update"
SHUTDOWN = "shutdown"

MAX_LINE = 64 * 1024


class StatusUpdate(TypedDict):
    """A process's status as relayed to its siblings and published on ``process:status``.

    On the socket it travels as a ``status_update`` message (``status_message``).
    """

    processName: str
    role: str
    status: str
    pid: int | None
    ts: float
    host: NotRequired[str]
    port: NotRequired[int]  # a child's ``ready``: the port it serves on
    delayMs: NotRequired[int]  # ``restarting``: the backoff before the next start
    reason: NotRequired[str]  # ``stopping``: why the supervisor stops it
    source: NotRequired[str]  # published by the orchestrator on the child's behalf


def status_message(update: StatusUpdate) -> dict[str, object]:
    """``update`` as a ``status_update`` message (its ``type`` first, like the original's)."""
    return {"type": STATUS_UPDATE, **update}


def encode(message: Mapping[str, object]) -> bytes:
    """One message as a line of compact JSON."""
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def ping_interval(max_heartbeat_age_ms: int) -> float:
    """Seconds between pings: at most 1 s, and at least four pings per MAX_HEARTBEAT_AGE."""
    return max(0.05, min(1.0, max_heartbeat_age_ms / 1000 / 4))


class LineDecoder:
    """Accumulates bytes and yields complete JSON messages (bad lines are logged, skipped)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[JsonObject]:
        """Add ``data``; the messages it completed, in order."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:  # a runaway line: drop it rather than grow forever
            log.warning("supervisor link: dropping %d bytes without a newline", len(self._buffer))
            self._buffer = b""
        messages: list[JsonObject] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("supervisor link: not JSON: %r", line[:200])
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages
