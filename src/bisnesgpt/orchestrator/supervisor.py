"""The orchestrator: spawns, watches, restarts and stops the role processes.

Modelled on gunicorn's arbiter: signal handlers only enqueue the signal and wake the loop
through a self-pipe; one loop (``run``) does everything else, in this order each turn:

1. signals — SIGTERM/SIGINT/SIGHUP: graceful shutdown (``shutdown.py``); a second one
   during it: kill now;
2. messages from the children (pings, status updates, relayed to the siblings);
3. reap — a child that exited unasked is a crash (or an ``exit``): restart it after the
   role's backoff, or give the role up after ``max_restarts`` restarts in a row
   (``restarts.py``; the api: stop everything and exit 1; wwebjs/meta: that role stays
   down, the rest keep running);
4. judge — a child silent for ``MAX_HEARTBEAT_AGE`` (``CHILD_START_TIMEOUT`` before its
   first ping) is hung; one whose RSS is over the role's limit is too big: both are
   stopped (SIGTERM: drain; SIGKILL at the deadline) and then restarted (``judging.py``);
5. spawn whatever is due;
6. helpers (``helpers.py``: the demo's sandboxes) — reaped, restarted and probed the same
   way, more simply; once every role's child and every helper is up, ``on_ready`` runs (the
   banner), once.

Children run ``python -m bisnesgpt run <role>`` in their own process group (a terminal's
Ctrl-C reaches only us; we stop them in order), get SIGTERM if we die (parent-death
signal, and end-of-file on their socket), and are SIGKILLed with their whole group when
they overstay a deadline, so nothing is left behind (``spawning.py``). Events and
health-row updates go to PostgreSQL through ``Recorder`` (a thread), never blocking this
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bisnesgpt import __version__
from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import deployment_namespace
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.banner import print_banner, ready_lines
from bisnesgpt.orchestrator.children import Child, ChildSpec, child_specs, is_child_status
from bisnesgpt.orchestrator.context import ORCHESTRATOR, Clock, SupervisorContext
from bisnesgpt.orchestrator.helpers import HelperLauncher, HelperProcessLauncher, Helpers, HelperSpec
from bisnesgpt.orchestrator.judging import Judge
from bisnesgpt.orchestrator.lock import OrchestratorLock
from bisnesgpt.orchestrator.policy import RestartPolicy
from bisnesgpt.orchestrator.recorder import Recorder, RecordSink
from bisnesgpt.orchestrator.restarts import Restarts
from bisnesgpt.orchestrator.shutdown import shut_down
from bisnesgpt.orchestrator.spawning import Launcher, ProcessLauncher, tree_rss

if TYPE_CHECKING:
    from bisnesgpt.infra.services import Services

log = logging.getLogger("bisnesgpt.orchestrator")

LOOP_TICK_S = 0.25
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SignalQueue:
    """Signals as the handlers leave them: queued, with a byte on the self-pipe to wake the loop."""

    def __init__(self) -> None:
        self._pending: list[int] = []
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)

    def push(self, signum: int, _frame: object = None) -> None:
        """The signal handler (also callable from another thread, as tests do)."""
        self._pending.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def install(self) -> None:
        """Handle the stop signals, and SIGCHLD so that an exit wakes the loop at once."""
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, self.push)

    def drain(self) -> list[int]:
        """The stop signals received since the last call (SIGCHLD only wakes the loop)."""
        pending, self._pending = self._pending, []
        return [s for s in pending if s != signal.SIGCHLD]

    def clear_wake(self) -> None:
        """Empty the self-pipe after a wake-up."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_fd, 4096)


class Supervisor:
    """The arbiter: one loop over the role processes (see the module docstring).

    ``launcher``, ``recorder``, ``clock``, ``measure_rss`` and ``helper_launcher`` are what it
    touches of the world; tests pass fakes. ``env``: what every child and helper gets in its
    environment besides ours (the demo's sandbox settings). ``on_ready``: called once, from
    the loop, when everything is up (it must not block: the loop waits for it).
    """

    def __init__(self, settings: Settings, *, database_url: str, redis_url: str,
                 recorder: RecordSink | None = None, launcher: Launcher | None = None,
                 clock: Clock = time.monotonic, measure_rss: Callable[[int], int] = tree_rss,
                 helpers: Sequence[HelperSpec] = (), helper_launcher: HelperLauncher | None = None,
                 env: Mapping[str, str] | None = None, on_ready: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.recorder = recorder or Recorder(
            database_url, redis_url, deployment_namespace(settings.redis_namespace, database_url, redis_url))
        self.children: list[Child] = [Child(spec, RestartPolicy.for_role(settings, spec.role))
                                      for spec in child_specs(settings)]
        self.ctx = SupervisorContext(settings, self.children, self.recorder, clock=clock)
        self.signals = SignalQueue()
        self.restarts = Restarts(self.ctx, launcher or ProcessLauncher(settings, database_url=database_url,
                                                                        redis_url=redis_url, env=env))
        self.judge = Judge(self.ctx, measure_rss=measure_rss)
        self.helpers = Helpers(self.ctx, helpers, helper_launcher or HelperProcessLauncher(settings, env))
        self.on_ready = on_ready
        self.announced_ready = False

    @staticmethod
    def child_specs(settings: Settings) -> list[ChildSpec]:
        """The slots ``settings`` ask for (``children.child_specs``)."""
        return child_specs(settings)

    @property
    def exit_code(self) -> int:
        """The status ``run`` returns: 0, or 1 once the api was given up."""
        return self.ctx.exit_code

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, install_signals: bool = True) -> int:
        """Supervise until a stop signal or a fatal give-up; returns the exit status.

        ``install_signals=False`` leaves the process's signal handlers alone (the loop then
        runs in any thread; stop it with ``signals.push``).
        """
        if install_signals:
            self.signals.install()
        self.start()
        try:
            while True:
                self.wait_for_activity(LOOP_TICK_S)
                status = self.turn()
                if status is not None:
                    return status
        finally:
            self.recorder.close()

    def start(self) -> None:
        """Start the recorder, record the ``start`` event and spawn every slot."""
        self.recorder.start()
        disabled = [r for r in ("wwebjs", "meta") if not self.settings.role_enabled(r)]
        log.info("orchestrator %s (pid %d) starting %s%s", __version__, os.getpid(),
                 ", ".join(c.name for c in self.children),
                 f"; disabled: {', '.join(disabled)}" if disabled else "")
        self.ctx.event(ORCHESTRATOR, "start", {"pid": os.getpid(), "children": [c.name for c in self.children],
                                               "disabled": disabled})
        self.helpers.start()
        for child in self.children:
            self.restarts.spawn(child)

    def turn(self) -> int | None:
        """One turn after waking: signals, reap, judge, spawn; the exit status once it is over."""
        stop_signals = self.signals.drain()
        if stop_signals:
            name = signal.Signals(stop_signals[0]).name
            log.info("received %s; stopping", name)
            return self.shutdown(name)
        self.restarts.reap()
        if self.ctx.exit_code:
            return self.shutdown("api given up")
        now = self.ctx.clock()
        self.judge.check_heartbeats(now)
        if self.judge.memory_check_due(now):
            self.judge.check_memory()
        self.judge.enforce_kill_deadlines(now)
        self.restarts.spawn_due(now)
        self.helpers.turn(now)
        self._announce_when_ready()
        return None

    @property
    def everything_ready(self) -> bool:
        """Every role's child reported ready (and still is) and every helper serves."""
        return all(c.state == "online" for c in self.children) and self.helpers.ready

    def _announce_when_ready(self) -> None:
        if self.announced_ready or not self.everything_ready:
            return
        self.announced_ready = True
        log.info("everything is ready: %s", ", ".join([c.name for c in self.children]
                                                        + [h.spec.name for h in self.helpers.slots]))
        if self.on_ready is not None:
            try:
                self.on_ready()
            except Exception:
                log.exception("the ready announcement failed")

    def shutdown(self, reason: str) -> int:
        """Stop every child (``shutdown.py``), then the helpers; the exit status."""
        signalled: list[bool] = []

        def signalled_again() -> bool:
            if self.signals.drain():
                signalled.append(True)
            return bool(signalled)

        status = shut_down(self.ctx, reason, wait=self.wait_for_activity, signalled_again=signalled_again)
        if self.helpers.slots:
            killed = self.helpers.stop(wait=self.wait_for_activity, signalled_again=signalled_again)
            log.info("helpers stopped%s", f" (killed: {', '.join(killed)})" if killed else "")
        return status

    def wait_for_activity(self, timeout: float) -> None:
        """Sleep until a signal, a message from a child or ``timeout``; read what came."""
        links = {c.link.fileno(): c for c in self.children if c.link is not None}
        try:
            ready, _, _ = select.select([self.signals.wake_fd, *links], [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            if fd == self.signals.wake_fd:
                self.signals.clear_wake()
            elif fd in links:
                self._read_link(links[fd])

    # --- messages from the children ----------------------------------------------------------

    def _read_link(self, child: Child) -> None:
        assert child.link is not None
        try:
            data = child.link.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the child closed its end (exiting); reaping will tell how
            child.close_link()
            return
        now = self.ctx.clock()
        child.last_ping = now
        if child.first_ping_at is None:
            child.first_ping_at = now
        for message in child.decoder.feed(data):
            if message.get("type") == protocol.STATUS_UPDATE:
                self._on_status_update(child, message)

    def _on_status_update(self, child: Child, message: JsonObject) -> None:
        status = message.get("status")
        if not is_child_status(status):
            log.warning("%s reported an unknown status %r; not relayed", child.name, status)
            return
        if status == "ready" and child.state == "starting":
            child.state = "online"
            child.ready_at = self.ctx.clock()
            log.info("%s (pid %s) ready after %.2fs", child.name, child.pid, child.ready_at - child.started_at)
        self.ctx.broadcast(child, status, child.pid, reported=True)


@dataclass(frozen=True)
class Extras:
    """What a command adds to a plain ``bisnesgpt start`` (``bisnesgpt demo``: its sandboxes, their
    settings for the children, and its own set-up and banner once everything is ready)."""

    helpers: tuple[HelperSpec, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    on_ready: Callable[[], None] | None = None


# Called after the migrations, before anything is spawned: (settings, the servers' URLs) -> extras.
Prepare = Callable[[Settings, "Services"], Extras]


def run_orchestrator(settings: Settings, prepare: Prepare | None = None) -> int:
    """``bisnesgpt start``: the data directory's lock, services (embedded if unset), migrations, then
    supervise; the banner once everything is ready. ``OrchestratorRunning`` when another
    orchestrator holds the lock. ``prepare`` (the demo) adds helpers, environment and its own
    ready announcement."""
    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.db.migrate import migrate
    from bisnesgpt.infra.secrets import resolve_encryption_key
    from bisnesgpt.infra.services import ensure_services

    with OrchestratorLock(settings.data_dir):
        setup_logging(ORCHESTRATOR, settings.log_level, settings.log_format)
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        settings = resolve_encryption_key(settings)
        services = ensure_services(settings)
        try:
            report = asyncio.run(migrate(services.database_url, on_progress=log.info))
            log.info("migrations: %d applied, %d already applied", len(report.applied), report.already_applied)
            extras = prepare(settings, services) if prepare is not None else Extras(
                on_ready=lambda: print_banner(ready_lines(settings)))
            return Supervisor(settings, database_url=services.database_url, redis_url=services.redis_url,
                              helpers=extras.helpers, env=extras.env, on_ready=extras.on_ready).run()
        finally:
            services.close()
