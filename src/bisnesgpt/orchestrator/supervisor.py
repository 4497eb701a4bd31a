"""The orchestrator: spawns, reaps and restarts the role processes.

Modelled on gunicorn's arbiter: signal handlers only enqueue the signal and wake the loop
through a self-pipe; one loop does everything else. Children run ``python -m bisnesgpt run
<role>`` in their own process group (a terminal's Ctrl-C reaches only us; we then stop
them in order), get SIGTERM if we die (parent-death signal), and ping us through a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO

from bisnesgpt.config import Role, Settings
from bisnesgpt.infra.process_utils import die_with_parent
from bisnesgpt.orchestrator.output import OutputPump
from bisnesgpt.processes.context import process_name_for

log = logging.getLogger("bisnesgpt.orchestrator")

BACKOFF_BASE_MS = {"api": 2000, "wwebjs": 5000, "meta": 3000, "legacy": 2000}
BACKOFF_CAP_MS = 60_000


@dataclass
class ChildSpec:
    role: Role
    instance_id: int

    @property
    def name(self) -> str:
        return process_name_for(self.role, self.instance_id)


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    ping_fd: int | None = None
    started_at: float = 0.0
    last_ping: float = 0.0
    restarts: int = 0
    next_start_at: float = 0.0
    buffer: bytes = b""
    pumps: list[OutputPump] = field(default_factory=list)


class Supervisor:
    def __init__(self, settings: Settings, *, database_url: str, redis_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.children: list[Child] = [Child(spec) for spec in self.child_specs(settings)]
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.stopping = False

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
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        self.install_signals()
        log.info("orchestrator pid %d starting %s", os.getpid(), ", ".join(c.spec.name for c in self.children))
        for child in self.children:
            self.spawn(child)
        while True:
            self._wait_for_activity(timeout=0.5)
            for signum in self._drain_signals():
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s; stopping", signal.Signals(signum).name)
                    return self.stop_all()
            self.reap_and_restart()

    def _drain_signals(self) -> list[int]:
        pending, self._signals = self._signals, []
        return pending

    def _wait_for_activity(self, timeout: float) -> None:
        fds = [self._wake_r] + [c.ping_fd for c in self.children if c.ping_fd is not None]
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 1024)
                continue
            child = next((c for c in self.children if c.ping_fd == fd), None)
            if child is not None:
                self._read_pings(child)

    def _read_pings(self, child: Child) -> None:
        assert child.ping_fd is not None
        try:
            data = os.read(child.ping_fd, 65536)
        except BlockingIOError:
            return
        if not data:  # the child closed its end (exiting)
            os.close(child.ping_fd)
            child.ping_fd = None
            return
        child.last_ping = time.monotonic()

    # --- children ---------------------------------------------------------------------------

    def child_env(self, child: Child, ping_w: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PROCESS_NAME": child.spec.role,
            "INSTANCE_ID": str(child.spec.instance_id),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "BISNESGPT_SUPERVISOR_FD": str(ping_w),
            "PYTHONUNBUFFERED": "1",
        })
        if self.settings.encryption_key is not None:
            env["ENCRYPTION_KEY"] = self.settings.encryption_key.get_secret_value()
        return env

    def spawn(self, child: Child) -> None:
        ping_r, ping_w = os.pipe()
        os.set_blocking(ping_r, False)
        process = subprocess.Popen(
            [sys.executable, "-m", "bisnesgpt", "run", child.spec.role],
            env=self.child_env(child, ping_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(ping_w,),
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        os.close(ping_w)
        child.process = process
        child.ping_fd = ping_r
        child.started_at = child.last_ping = time.monotonic()
        assert process.stdout is not None
        assert process.stderr is not None
        child.pumps = [self._pump(child, process.stdout, "out"), self._pump(child, process.stderr, "error")]
        log.info("spawned %s (pid %d)", child.spec.name, process.pid)

    def _pump(self, child: Child, stream: IO[bytes], kind: str) -> OutputPump:
        pump = OutputPump(stream, self.settings.log_dir / f"{child.spec.role}-{kind}.log", child.spec.name,
                          echo=sys.stdout if kind == "out" else sys.stderr)
        pump.start()
        return pump

    def reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                code = process.returncode
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                log.warning("%s (pid %d) died: %s", child.spec.name, process.pid, how)
                self._forget(child)
                delay_ms = min(BACKOFF_BASE_MS[child.spec.role] * 2 ** child.restarts, BACKOFF_CAP_MS)
                child.restarts += 1
                child.next_start_at = now + delay_ms / 1000
            if child.process is None and now >= child.next_start_at:
                self.spawn(child)

    def _forget(self, child: Child) -> None:
        if child.ping_fd is not None:
            os.close(child.ping_fd)
            child.ping_fd = None
        for pump in child.pumps:
            pump.join(timeout=1)
        child.pumps = []
        child.process = None

    # --- shutdown ---------------------------------------------------------------------------

    def stop_all(self) -> int:
        """SIGTERM every child, wait up to the deadline (a second signal: now), then SIGKILL."""
        self.stopping = True
        alive = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in alive:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + 2.0
        while time.monotonic() < deadline and any(c.process.poll() is None for c in alive if c.process):
            self._wait_for_activity(timeout=0.1)
            if any(s in (signal.SIGINT, signal.SIGTERM) for s in self._drain_signals()):
                log.warning("second signal: killing children now")
                break
        for child in alive:
            if child.process is not None and child.process.poll() is None:
                log.warning("%s did not stop in time; SIGKILL", child.spec.name)
                child.process.kill()
                child.process.wait()
        for child in self.children:
            if child.process is not None:
                child.process.wait()
                self._forget(child)
        log.info("all children stopped")
        return 0


def run_orchestrator(settings: Settings) -> int:
    """``bisnesgpt start``: services (embedded if unset), migrations, then supervise."""
    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.db.migrate import migrate
    from bisnesgpt.infra.services import ensure_services

    setup_logging("orchestrator", settings.log_level, settings.log_format)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    from bisnesgpt.infra.secrets import resolve_encryption_key

    settings = resolve_encryption_key(settings)
    services = ensure_services(settings)
    try:
        report = asyncio.run(migrate(services.database_url, on_progress=log.info))
        log.info("migrations: %d applied, %d already applied", len(report.applied), report.already_applied)
        return Supervisor(settings, database_url=services.database_url, redis_url=services.redis_url).run()
    finally:
        services.close()
