"""Helper processes: what the orchestrator runs beside the roles (the demo's two sandboxes).

A helper is supervised like a role's child, only more simply: it is no bisnesgpt role (no
socket to the orchestrator, no pings, no ``process_health`` row), so it is ready once its
port accepts a connection and alive while its process runs. One that exits unasked gets a
``crash`` event and is started again after a backoff that doubles from
``HELPER_RESTART_DELAY_MS`` up to ``HELPER_RESTART_DELAY_MAX_MS`` (back to the start once it
stayed ready ``HELPER_STABLE_S``); a helper is never given up. Helpers start before the
roles and stop after them, so the roles' last sends still find them. Their output goes to
``logs/<name>-{out,error}.log`` and the console, like a role's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bisnesgpt.config import Settings
from bisnesgpt.infra.process_utils import die_with_parent
from bisnesgpt.orchestrator.children import ExitInfo
from bisnesgpt.orchestrator.context import SupervisorContext
from bisnesgpt.orchestrator.judging import KILL_GRACE_S
from bisnesgpt.orchestrator.output import OutputPump
from bisnesgpt.orchestrator.spawning import ChildProcess, PopenChild

log = logging.getLogger("bisnesgpt.orchestrator")

HELPER_RESTART_DELAY_MS = 1_000
HELPER_RESTART_DELAY_MAX_MS = 30_000
HELPER_STABLE_S = 10.0
PROBE_INTERVAL_S = 0.2


@dataclass(frozen=True)
class HelperSpec:
    """A helper: its name (logs, events), what ``python -m bisnesgpt`` runs, and the port it serves."""

    name: str
    args: tuple[str, ...]
    port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """Where it serves."""
        return f"http://{self.host}:{self.port}"


class HelperLauncher(Protocol):
    """Starts a helper's process; raises ``OSError`` when it cannot."""

    def launch(self, spec: HelperSpec) -> ChildProcess:
        """Start ``spec`` and return its process."""
        ...


class HelperProcessLauncher:
    """The real launcher: ``python -m bisnesgpt <args>`` in a session of its own, like a role."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(env or {})

    def launch(self, spec: HelperSpec) -> ChildProcess:
        """Spawn it (SIGTERM when the orchestrator dies) with its output pumped to its log files."""
        process = subprocess.Popen(
            [sys.executable, "-m", "bisnesgpt", *spec.args],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = [OutputPump(stream, self.settings.log_dir / f"{spec.name}-{kind}.log", spec.name,
                            echo=sys.stdout if kind == "out" else sys.stderr)
                 for stream, kind in ((process.stdout, "out"), (process.stderr, "error"))]
        for pump in pumps:
            pump.start()
        return PopenChild(process, pumps)


def port_open(host: str, port: int) -> bool:
    """Whether ``host:port`` accepts a TCP connection now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Helper:
    """One helper slot: its process (if one runs), readiness and restart bookkeeping."""

    spec: HelperSpec
    process: ChildProcess | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    in_a_row: int = 0
    restarts: int = 0
    next_start_at: float = 0.0
    next_probe_at: float = 0.0

    @property
    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None


class Helpers:
    """Starts, watches, restarts and stops the helpers (see the module docstring)."""

    def __init__(self, ctx: SupervisorContext, specs: Sequence[HelperSpec], launcher: HelperLauncher, *,
                 probe: Callable[[str, int], bool] = port_open) -> None:
        self.ctx = ctx
        self.slots = [Helper(spec) for spec in specs]
        self.launcher = launcher
        self.probe = probe

    @property
    def ready(self) -> bool:
        """Every helper runs and serves."""
        return all(slot.alive and slot.ready_at is not None for slot in self.slots)

    def start(self) -> None:
        """Spawn every helper."""
        for slot in self.slots:
            self._spawn(slot)

    def turn(self, now: float) -> None:
        """Reap what exited (and schedule its restart), start what is due, see who serves now."""
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is not None:
                self._after_exit(slot, now)
            if slot.process is None and now >= slot.next_start_at:
                self._spawn(slot)
            if slot.alive and slot.ready_at is None and now >= slot.next_probe_at:
                slot.next_probe_at = now + PROBE_INTERVAL_S
                if self.probe(slot.spec.host, slot.spec.port):
                    slot.ready_at = now
                    log.info("%s (pid %s) serving on %s after %.2fs", slot.spec.name, slot.process and slot.process.pid,
                             slot.spec.url, now - slot.started_at)

    def stop(self, *, wait: Callable[[float], None], signalled_again: Callable[[], bool]) -> list[str]:
        """SIGTERM every helper, SIGKILL (with its group) whoever overstays; the names killed."""
        running = [slot for slot in self.slots if slot.alive]
        for slot in running:
            assert slot.process is not None
            slot.process.terminate()
        deadline = self.ctx.clock() + self.ctx.settings.shutdown_timeout + KILL_GRACE_S
        while any(slot.alive for slot in running) and self.ctx.clock() < deadline and not signalled_again():
            wait(0.05)
        killed = []
        for slot in self.slots:
            if slot.process is None:
                continue
            if slot.alive:
                killed.append(slot.spec.name)
                log.warning("%s (pid %d) did not stop in time: SIGKILL", slot.spec.name, slot.process.pid)
            slot.process.kill_group()
            slot.process.wait()
            slot.process.release()
            slot.process = None
        return killed

    def _spawn(self, slot: Helper) -> None:
        now = self.ctx.clock()
        try:
            slot.process = self.launcher.launch(slot.spec)
        except OSError as exc:
            log.exception("cannot spawn %s", slot.spec.name)
            self._schedule(slot, now, ExitInfo.spawn_failed(str(exc)))
            return
        slot.started_at = now
        slot.ready_at = None
        slot.next_probe_at = now
        if slot.restarts:
            self.ctx.event(slot.spec.name, "restart", {"newPid": slot.process.pid, "attempt": slot.in_a_row,
                                                       "restarts": slot.restarts})
        log.info("spawned %s (pid %d): bisnesgpt %s", slot.spec.name, slot.process.pid, " ".join(slot.spec.args))

    def _after_exit(self, slot: Helper, now: float) -> None:
        assert slot.process is not None
        exit_info = ExitInfo.of_returncode(slot.process.wait(), slot.process.pid)
        uptime = now - slot.started_at
        slot.process.kill_group()
        slot.process.release()
        slot.process = None
        log.warning("%s (pid %s) died: %s after %.1fs", slot.spec.name, exit_info.pid, exit_info.how(), uptime)
        self.ctx.event(slot.spec.name, "crash" if exit_info.crashed else "exit",
                       {**exit_info.as_json(), "uptimeSeconds": round(uptime, 3), "restartsInARow": slot.in_a_row},
                       "error" if exit_info.crashed else "warning")
        if slot.ready_at is not None and now - slot.ready_at >= HELPER_STABLE_S:
            slot.in_a_row = 0
        self._schedule(slot, now, exit_info)

    def _schedule(self, slot: Helper, now: float, exit_info: ExitInfo) -> None:
        slot.in_a_row += 1
        slot.restarts += 1
        delay_ms = min(HELPER_RESTART_DELAY_MS * 2 ** min(slot.in_a_row - 1, 16), HELPER_RESTART_DELAY_MAX_MS)
        slot.next_start_at = now + delay_ms / 1000
        slot.ready_at = None
        log.info("%s restarts in %d ms (%d in a row; %s)", slot.spec.name, delay_ms, slot.in_a_row, exit_info.text())
