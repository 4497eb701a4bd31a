"""The orchestrator: spawns, watches, restarts and stops the role processes.

Modelled on gunicorn's arbiter: signal handlers only enqueue the signal and wake the loop
through a self-pipe; one loop (``run``) does everything else, in this order each turn:

1. signals — SIGTERM/SIGINT/SIGHUP: graceful shutdown; a second one during it: kill now;
2. messages from the children (pings, status updates, relayed to the siblings);
3. reap — a child that exited unasked is a crash (or an ``exit``): restart it after the
   role's backoff, or give the role up after ``max_restarts`` restarts in a row (the api:
   stop everything and exit 1; wwebjs/meta: that role stays down, the rest keep running);
4. judge — a child silent for ``MAX_HEARTBEAT_AGE`` (``CHILD_START_TIMEOUT`` before its
   first ping) is hung; one whose RSS is over the role's limit is too big: both are
   stopped (SIGTERM: drain; SIGKILL at the deadline) and then restarted;
5. spawn whatever is due.

Children run ``python -m bisnesgpt run <role>`` in their own process group (a terminal's
Ctrl-C reaches only us; we stop them in order), get SIGTERM if we die (parent-death
signal, and end-of-file on their socket), and are SIGKILLed with their whole group when
they overstay a deadline, so nothing is left behind. Events and health-row updates go to
PostgreSQL through ``Recorder`` (a thread), never blocking this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import psutil

from bisnesgpt import __version__
from bisnesgpt.config import Role, Settings
from bisnesgpt.coordination.channels import PROCESS_SHUTDOWN, PROCESS_STATUS
from bisnesgpt.health.events import Severity
from bisnesgpt.infra.process_utils import die_with_parent
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.output import OutputPump
from bisnesgpt.orchestrator.policy import RestartPolicy
from bisnesgpt.orchestrator.recorder import Recorder
from bisnesgpt.processes.context import process_name_for

log = logging.getLogger("bisnesgpt.orchestrator")

ORCHESTRATOR = "orchestrator"
# After SHUTDOWN_TIMEOUT a child still has to stop its components and close its pools.
KILL_GRACE_S = 2.0
LOOP_TICK_S = 0.25
EXIT_GAVE_UP = 1

State = Literal["starting", "online", "stopping", "waiting", "given_up"]


@dataclass(frozen=True)
class ChildSpec:
    role: Role
    instance_id: int

    @property
    def name(self) -> str:
        return process_name_for(self.role, self.instance_id)


@dataclass
class Child:
    spec: ChildSpec
    policy: RestartPolicy
    state: State = "waiting"
    process: subprocess.Popen[bytes] | None = None
    link: socket.socket | None = None
    decoder: protocol.LineDecoder = field(default_factory=protocol.LineDecoder)
    started_at: float = 0.0
    ready_at: float | None = None  # when it reported ready: uptime counts as stable from here
    first_ping_at: float | None = None
    last_ping: float = 0.0
    restarts: int = 0  # restarts of this slot since the orchestrator started
    in_a_row: int = 0  # restarts since the child last stayed up min_uptime
    next_start_at: float = 0.0
    stop_reason: str | None = None  # why we asked it to stop: shutdown | hang | memory
    kill_at: float | None = None
    pending_restart: dict[str, Any] | None = None
    status: str = "waiting"  # the last status it reported (or we observed), relayed to siblings
    pumps: list[OutputPump] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def describe_exit(code: int) -> dict[str, Any]:
    if code < 0:
        with contextlib.suppress(ValueError):
            return {"signal": signal.Signals(-code).name, "exitCode": None}
        return {"signal": str(-code), "exitCode": None}
    return {"signal": None, "exitCode": code}


class Supervisor:
    def __init__(self, settings: Settings, *, database_url: str, redis_url: str,
                 recorder: Recorder | None = None) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.recorder = recorder or Recorder(database_url, redis_url)
        self.children: list[Child] = [Child(spec, RestartPolicy.for_role(settings, spec.role))
                                       for spec in self.child_specs(settings)]
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.stopping = False
        self.exit_code = 0
        self._next_memory_check = 0.0
        self.host = socket.gethostname()

    @staticmethod
    def child_specs(settings: Settings) -> list[ChildSpec]:
        specs = [ChildSpec("api", i) for i in range(settings.api_instances)]
        if settings.enable_wwebjs:
            specs.append(ChildSpec("wwebjs", 0))
        if settings.enable_meta:
            specs += [ChildSpec("meta", i) for i in range(settings.meta_instances)]
        return specs

    # --- signals: only enqueue ------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def _drain_signals(self) -> list[int]:
        pending, self._signals = self._signals, []
        return [s for s in pending if s != signal.SIGCHLD]  # SIGCHLD only wakes the loop

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until a stop signal or a fatal give-up; returns the exit status."""
        self.install_signals()
        self.recorder.start()
        disabled = [r for r in ("wwebjs", "meta") if not self.settings.role_enabled(r)]
        log.info("orchestrator %s (pid %d) starting %s%s", __version__, os.getpid(),
                 ", ".join(c.name for c in self.children),
                 f"; disabled: {', '.join(disabled)}" if disabled else "")
        self._event(ORCHESTRATOR, "start", {"pid": os.getpid(), "children": [c.name for c in self.children],
                                            "disabled": disabled})
        for child in self.children:
            self.spawn(child)
        try:
            while True:
                self._wait_for_activity(LOOP_TICK_S)
                stop_signals = self._drain_signals()
                if stop_signals:
                    log.info("received %s; stopping", signal.Signals(stop_signals[0]).name)
                    return self.shutdown(signal.Signals(stop_signals[0]).name)
                self.reap()
                if self.exit_code:
                    return self.shutdown("api given up")
                now = time.monotonic()
                self.check_heartbeats(now)
                if now >= self._next_memory_check:
                    self._next_memory_check = now + self.settings.memory_check_interval / 1000
                    self.check_memory()
                self.enforce_kill_deadlines(now)
                self.spawn_due(now)
        finally:
            self.recorder.close()

    def _wait_for_activity(self, timeout: float) -> None:
        links = {c.link.fileno(): c for c in self.children if c.link is not None}
        try:
            ready, _, _ = select.select([self._wake_r, *links], [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif fd in links:
                self._read_link(links[fd])

    def _read_link(self, child: Child) -> None:
        assert child.link is not None
        try:
            data = child.link.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the child closed its end (exiting); reaping will tell how
            self._close_link(child)
            return
        now = time.monotonic()
        child.last_ping = now
        if child.first_ping_at is None:
            child.first_ping_at = now
        for message in child.decoder.feed(data):
            if message.get("type") == protocol.STATUS_UPDATE:
                self._on_status_update(child, message)

    def _on_status_update(self, child: Child, message: dict[str, Any]) -> None:
        status = str(message.get("status"))
        child.status = status
        if status == "ready" and child.state == "starting":
            child.state = "online"
            child.ready_at = time.monotonic()
            log.info("%s (pid %s) ready after %.2fs", child.name, child.pid, time.monotonic() - child.started_at)
        self.broadcast(child.name, child.spec.role, status, child.pid, origin=child)

    def broadcast(self, name: str, role: str, status: str, pid: int | None, *,
                  origin: Child | None = None, publish: bool = False, **extra: Any) -> None:
        """Relay a status to every other child (the original's status_update IPC message)."""
        if origin is None:
            for child in self.children:
                if child.name == name:
                    child.status = status
        message = {"type": protocol.STATUS_UPDATE, "processName": name, "role": role, "status": status,
                   "pid": pid, "ts": time.time(), **extra}
        data = protocol.encode(message)
        for other in self.children:
            if other is origin or other.link is None:
                continue
            with contextlib.suppress(OSError):  # full buffer (a hung child) or closing: skip it
                other.link.send(data)
        if publish:
            self.recorder.publish(PROCESS_STATUS, {k: v for k, v in message.items() if k != "type"}
                                  | {"host": self.host, "source": ORCHESTRATOR})

    # --- children ---------------------------------------------------------------------------

    def child_env(self, child: Child, link_fd: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PROCESS_NAME": child.spec.role,
            "INSTANCE_ID": str(child.spec.instance_id),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "BISNESGPT_SUPERVISOR_FD": str(link_fd),
            "PYTHONUNBUFFERED": "1",
        })
        if self.settings.encryption_key is not None:
            env["ENCRYPTION_KEY"] = self.settings.encryption_key.get_secret_value()
        return env

    def spawn(self, child: Child) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent_end.setblocking(False)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "bisnesgpt", "run", child.spec.role],
                env=self.child_env(child, child_end.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        except OSError as exc:
            parent_end.close()
            child_end.close()
            log.exception("cannot spawn %s", child.name)
            self._after_exit(child, uptime_s=0.0, exit_info={"exitCode": None, "signal": None,
                                                             "error": str(exc)}, requested=None)
            return
        child_end.close()
        now = time.monotonic()
        child.process = process
        child.link = parent_end
        child.decoder = protocol.LineDecoder()
        child.state = "starting"
        child.started_at = child.last_ping = now
        child.ready_at = None
        child.first_ping_at = None
        child.stop_reason = None
        child.kill_at = None
        assert process.stdout is not None
        assert process.stderr is not None
        child.pumps = [self._pump(child, process.stdout, "out"), self._pump(child, process.stderr, "error")]
        self.recorder.restarts(child.name, child.spec.role, child.spec.instance_id, child.restarts)
        if child.pending_restart is not None:
            restart = {**child.pending_restart, "newPid": process.pid, "restarts": child.restarts}
            log.info("restarted %s (pid %d; %s, attempt %d in a row, after %d ms)", child.name, process.pid,
                     restart["reason"], restart["attempt"], restart["delayMs"])
            self._event(child.name, "restart", restart)
            child.pending_restart = None
        else:
            log.info("spawned %s (pid %d)", child.name, process.pid)
        self.broadcast(child.name, child.spec.role, "starting", process.pid, publish=True)
        self._send_snapshot(child)

    def _send_snapshot(self, newcomer: Child) -> None:
        """What a new child should know at once: every sibling's last status."""
        assert newcomer.link is not None
        for other in self.children:
            if other is newcomer:
                continue
            message = {"type": protocol.STATUS_UPDATE, "processName": other.name, "role": other.spec.role,
                       "status": other.status, "pid": other.pid, "ts": time.time()}
            with contextlib.suppress(OSError):
                newcomer.link.send(protocol.encode(message))

    def _pump(self, child: Child, stream: IO[bytes], kind: str) -> OutputPump:
        pump = OutputPump(stream, self.settings.log_dir / f"{child.spec.role}-{kind}.log", child.name,
                          echo=sys.stdout if kind == "out" else sys.stderr)
        pump.start()
        return pump

    def spawn_due(self, now: float) -> None:
        for child in self.children:
            if child.state == "waiting" and child.process is None and now >= child.next_start_at:
                self.spawn(child)

    def reap(self) -> None:
        for child in self.children:
            process = child.process
            if process is None:
                continue
            code = process.poll()
            if code is None:
                continue
            uptime = time.monotonic() - child.started_at
            # A child that crashes while starting never counts as stable, however slow the start.
            ready_for = time.monotonic() - child.ready_at if child.ready_at is not None else 0.0
            requested = child.stop_reason
            self._forget(child)
            exit_info = describe_exit(code)
            how = f"signal {exit_info['signal']}" if exit_info["signal"] else f"exit code {code}"
            if self.stopping:
                continue
            if requested is None:
                log.warning("%s (pid %d) died: %s after %.1fs", child.name, process.pid, how, uptime)
            else:
                log.info("%s (pid %d) stopped (%s): %s", child.name, process.pid, requested, how)
            self._after_exit(child, uptime_s=uptime, ready_for_s=ready_for,
                             exit_info={**exit_info, "pid": process.pid}, requested=requested)

    def _after_exit(self, child: Child, *, uptime_s: float, exit_info: dict[str, Any],
                    requested: str | None, ready_for_s: float = 0.0) -> None:
        """Record the exit, then schedule the restart (backoff) or give the role up."""
        pid = exit_info.get("pid")
        data = {**exit_info, "uptimeSeconds": round(uptime_s, 3), "restartsInARow": child.in_a_row}
        if requested is None:
            crashed = exit_info.get("exitCode") != 0
            self._event(child.name, "crash" if crashed else "exit", data, "error" if crashed else "warning")
        self.recorder.exited(child.name, child.spec.role, child.spec.instance_id, status="crashed",
                             pid=pid or 0, error=None if requested else _exit_text(exit_info),
                             exited_at=time.time())
        if child.policy.was_stable(ready_for_s):
            child.in_a_row = 0
        if child.policy.gives_up_after(child.in_a_row):
            self.give_up(child, exit_info)
            return
        child.in_a_row += 1
        child.restarts += 1
        delay_ms = child.policy.delay_ms(child.in_a_row)
        child.state = "waiting"
        child.next_start_at = time.monotonic() + delay_ms / 1000
        child.pending_restart = {"reason": requested or ("crash" if exit_info.get("exitCode") != 0 else "exit"),
                                 "attempt": child.in_a_row, "delayMs": delay_ms, "oldPid": pid,
                                 "maxRestarts": child.policy.max_restarts}
        log.info("%s restarts in %d ms (%d in a row, at most %d)", child.name, delay_ms, child.in_a_row,
                 child.policy.max_restarts)
        self.broadcast(child.name, child.spec.role, "restarting", pid, publish=True, delayMs=delay_ms)

    def give_up(self, child: Child, exit_info: dict[str, Any]) -> None:
        child.state = "given_up"
        fatal = child.policy.fatal_on_give_up
        log.critical("%s crashed %d time(s) in a row: giving up%s", child.name, child.in_a_row + 1,
                     "; stopping everything" if fatal else "; the other roles keep running")
        self._event(child.name, "give_up", {"restarts": child.in_a_row, "maxRestarts": child.policy.max_restarts,
                                            "lastExit": exit_info, "fatal": fatal}, "critical")
        self.recorder.exited(child.name, child.spec.role, child.spec.instance_id, status="errored",
                             pid=exit_info.get("pid") or 0, error=f"given up after {child.in_a_row} restarts",
                             exited_at=time.time())
        self.broadcast(child.name, child.spec.role, "given_up", exit_info.get("pid"), publish=True)
        if fatal:
            self.exit_code = EXIT_GAVE_UP

    def _forget(self, child: Child) -> None:
        """Release what a dead child held: its socket, its output pumps, its process group."""
        self._close_link(child)
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)  # anything it left in its group
        for pump in child.pumps:
            pump.join(timeout=1)
        child.pumps = []
        child.process = None
        child.kill_at = None

    def _close_link(self, child: Child) -> None:
        if child.link is not None:
            with contextlib.suppress(OSError):
                child.link.close()
            child.link = None

    # --- judging the living -------------------------------------------------------------------

    def check_heartbeats(self, now: float) -> None:
        max_age = self.settings.max_heartbeat_age / 1000
        start_timeout = self.settings.child_start_timeout / 1000
        for child in self.children:
            if child.state not in ("starting", "online") or not child.alive:
                continue
            if child.first_ping_at is None:
                silent, limit = now - child.started_at, start_timeout
            else:
                silent, limit = now - child.last_ping, max_age
            if silent > limit:
                log.error("%s (pid %s) silent for %.1fs (limit %.1fs): hung; stopping it", child.name, child.pid,
                          silent, limit)
                self._event(child.name, "hang", {"pid": child.pid, "silentSeconds": round(silent, 3),
                                                 "limitSeconds": limit, "pinged": child.first_ping_at is not None},
                            "error")
                self.stop_child(child, "hang")

    def check_memory(self) -> None:
        for child in self.children:
            limit = child.policy.max_memory_bytes
            if not limit or child.state != "online" or child.pid is None:
                continue
            rss = tree_rss(child.pid)
            if rss > limit:
                log.warning("%s (pid %d) RSS %.1f MB over its limit %.1f MB: restarting after draining",
                            child.name, child.pid, rss / 2**20, limit / 2**20)
                self._event(child.name, "memory_restart", {"pid": child.pid, "rssBytes": rss, "limitBytes": limit},
                            "warning")
                self.stop_child(child, "memory")

    def stop_child(self, child: Child, reason: str) -> None:
        """Ask a child to stop (SIGTERM: it drains); SIGKILL its group at the deadline."""
        if child.process is None:
            return
        child.state = "stopping"
        child.stop_reason = reason
        child.kill_at = time.monotonic() + self.settings.shutdown_timeout + KILL_GRACE_S
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
        self.broadcast(child.name, child.spec.role, "stopping", child.pid, publish=True, reason=reason)

    def enforce_kill_deadlines(self, now: float) -> None:
        for child in self.children:
            if child.kill_at is not None and now >= child.kill_at and child.alive:
                assert child.process is not None
                log.warning("%s (pid %d) did not stop in time: SIGKILL", child.name, child.process.pid)
                self._event(child.name, "killed", {"pid": child.process.pid, "reason": child.stop_reason},
                            "warning")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.kill_at = None

    # --- shutdown ---------------------------------------------------------------------------

    def shutdown(self, reason: str) -> int:
        """SIGTERM every child; wait up to SHUTDOWN_TIMEOUT (+grace; a second signal: now); SIGKILL."""
        self.stopping = True
        began = time.monotonic()
        alive = [c for c in self.children if c.alive]
        # An announcement (no "targets": the children are told by SIGTERM, the reliable path).
        self.recorder.publish(PROCESS_SHUTDOWN, {"processName": ORCHESTRATOR, "host": self.host,
                                                 "pid": os.getpid(), "reason": reason,
                                                 "stopping": [c.name for c in alive]})
        for child in alive:
            self.stop_child(child, "shutdown")
        deadline = began + self.settings.shutdown_timeout + KILL_GRACE_S
        while any(c.alive for c in alive) and time.monotonic() < deadline:
            self._wait_for_activity(0.05)
            if self._drain_signals():
                log.warning("second signal: killing the children now")
                break
        killed = []
        for child in alive:
            if child.alive:
                assert child.process is not None
                killed.append(child.name)
                log.warning("%s (pid %d) did not stop in time: SIGKILL", child.name, child.process.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
        for child in self.children:
            if child.process is not None:
                child.process.wait()
                self._forget(child)
        took = time.monotonic() - began
        log.info("all children stopped in %.2fs%s", took, f" (killed: {', '.join(killed)})" if killed else "")
        self._event(ORCHESTRATOR, "stop", {"pid": os.getpid(), "reason": reason, "seconds": round(took, 3),
                                           "killed": killed, "exitCode": self.exit_code},
                    "critical" if self.exit_code else "info")
        return self.exit_code

    def _event(self, process_name: str, event_type: str, data: dict[str, Any], severity: Severity = "info") -> None:
        self.recorder.event(process_name, event_type, data, severity)


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


def _exit_text(exit_info: dict[str, Any]) -> str:
    if exit_info.get("signal"):
        return f"killed by {exit_info['signal']}"
    if exit_info.get("error"):
        return str(exit_info["error"])
    return f"exited with code {exit_info.get('exitCode')}"


def run_orchestrator(settings: Settings) -> int:
    """``bisnesgpt start``: services (embedded if unset), migrations, then supervise."""
    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.db.migrate import migrate
    from bisnesgpt.infra.secrets import resolve_encryption_key
    from bisnesgpt.infra.services import ensure_services

    setup_logging(ORCHESTRATOR, settings.log_level, settings.log_format)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings = resolve_encryption_key(settings)
    services = ensure_services(settings)
    try:
        report = asyncio.run(migrate(services.database_url, on_progress=log.info))
        log.info("migrations: %d applied, %d already applied", len(report.applied), report.already_applied)
        return Supervisor(settings, database_url=services.database_url, redis_url=services.redis_url).run()
    finally:
        services.close()
