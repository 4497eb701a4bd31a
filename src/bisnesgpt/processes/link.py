"""This child's end of the orchestrator socket (protocol: ``orchestrator/protocol.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.protocol import LineDecoder

log = logging.getLogger("bisnesgpt.processes.runtime")


class SupervisorLink:
    """This child's end of the orchestrator socket (protocol: ``orchestrator/protocol.py``).

    Pings from the event loop every ``interval`` seconds: a blocked loop stops the pings,
    which is how the orchestrator tells "hung" from "busy". Receives sibling status updates
    (into ``peers``) and ``shutdown``; end of file means the orchestrator is gone, and this
    process then stops by itself (besides the parent-death signal).
    """

    def __init__(self, fd: int, *, interval: float, on_lost: Callable[[], None],
                 on_shutdown: Callable[[str], None],
                 on_status: Callable[[JsonObject], None]) -> None:
        self.fd = fd
        self.interval = interval
        self.on_lost = on_lost
        self.on_shutdown = on_shutdown
        self.on_status = on_status
        self._decoder = LineDecoder()
        self._task: asyncio.Task[None] | None = None
        self._reading = False
        self.lost = False

    def start(self) -> None:
        """Read the socket from the event loop and begin pinging."""
        os.set_blocking(self.fd, False)
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)
        self._reading = True
        self._task = asyncio.create_task(self._run(), name="supervisor-link")

    def send(self, message: Mapping[str, object]) -> None:
        """Write one message; dropped when the orchestrator is slow to read (the next ping will do)."""
        if self.lost:
            return
        try:
            os.write(self.fd, protocol.encode(message))
        except BlockingIOError:
            pass  # the orchestrator is slow to read; the next ping will do
        except OSError:
            self._lose()

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lose()
            return
        for message in self._decoder.feed(data):
            kind = message.get("type")
            if kind == protocol.SHUTDOWN:
                self.on_shutdown(str(message.get("reason") or "orchestrator"))
            elif kind == protocol.STATUS_UPDATE:
                self.on_status(message)

    def _lose(self) -> None:
        if self.lost:
            return
        self.lost = True
        self._stop_reading()
        log.warning("orchestrator link lost: stopping")
        self.on_lost()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.fd)

    async def _run(self) -> None:
        while True:
            self.send({"type": protocol.HEARTBEAT, "ts": time.time()})
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        """Stop reading and pinging (the socket stays open until the process exits)."""
        self._stop_reading()
        if self._task is not None:
            self._task.cancel()
