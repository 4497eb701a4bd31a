"""Exits and restarts: spawning a slot's process, reaping it, and what its exit leads to.

A child that exited unasked crashed (or, with status 0, exited): it is restarted after its
role's backoff, ``base * 2^(n-1)`` for the n-th restart in a row, capped; the count starts
again once a child stayed ready ``min_uptime``. After ``max_restarts`` restarts in a row
the role is given up: for the api that stops everything (the orchestrator exits 1), for
wwebjs/meta only that slot stays down. A child the supervisor stopped (hang, memory) is
restarted the same way. The slot's row says ``crashed`` only for a fault; a restart that
was asked for says ``restarting``.
"""

from __future__ import annotations

import logging
import time

from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.children import Child, ExitInfo, RestartPlan, StopReason
from bisnesgpt.orchestrator.context import EXIT_GAVE_UP, SupervisorContext
from bisnesgpt.orchestrator.recorder import ExitedStatus
from bisnesgpt.orchestrator.spawning import Launcher

log = logging.getLogger("bisnesgpt.orchestrator")


def exited_status(exit_info: ExitInfo, requested: StopReason | None) -> ExitedStatus:
    """How an exit is recorded: a fault (a signal or non-zero code unasked, a hang) is ``crashed``;
    what was asked for (a memory drain, a clean exit 0 such as a ``process:shutdown``
    rolling restart) is ``restarting``."""
    if requested == "hang" or (requested is None and exit_info.crashed):
        return "crashed"
    return "restarting"


class Restarts:
    """Starts the slots' processes and decides what follows each exit."""

    def __init__(self, ctx: SupervisorContext, launcher: Launcher) -> None:
        self.ctx = ctx
        self.launcher = launcher

    def spawn(self, child: Child) -> None:
        """Start the slot's process; a spawn that fails counts as an exit (and is retried)."""
        try:
            launched = self.launcher.launch(child.spec)
        except OSError as exc:
            log.exception("cannot spawn %s", child.name)
            self.after_exit(child, uptime_s=0.0, exit_info=ExitInfo.spawn_failed(str(exc)), requested=None)
            return
        now = self.ctx.clock()
        process = launched.process
        child.process = process
        child.link = launched.link
        child.decoder = protocol.LineDecoder()
        child.state = "starting"
        child.started_at = child.last_ping = now
        child.ready_at = None
        child.first_ping_at = None
        child.stop_reason = None
        child.kill_at = None
        self.ctx.recorder.restarts(child.name, child.spec.role, child.spec.instance_id, child.restarts)
        plan = child.pending_restart
        if plan is not None:
            log.info("restarted %s (pid %d; %s, attempt %d in a row, after %d ms)", child.name, process.pid,
                     plan.reason, plan.attempt, plan.delay_ms)
            self.ctx.event(child.name, "restart", plan.as_event(new_pid=process.pid, restarts=child.restarts))
            child.pending_restart = None
        else:
            log.info("spawned %s (pid %d)", child.name, process.pid)
        self.ctx.broadcast(child, "starting", process.pid, publish=True)
        self.ctx.send_snapshot(child)

    def spawn_due(self, now: float) -> None:
        """Start every waiting slot whose backoff is over."""
        for child in self.ctx.children:
            if child.state == "waiting" and child.process is None and now >= child.next_start_at:
                self.spawn(child)

    def reap(self) -> None:
        """Collect every process that exited, release what it held, and act on the exit."""
        for child in self.ctx.children:
            process = child.process
            if process is None:
                continue
            code = process.poll()
            if code is None:
                continue
            now = self.ctx.clock()
            uptime = now - child.started_at
            # A child that crashes while starting never counts as stable, however slow the start.
            ready_for = now - child.ready_at if child.ready_at is not None else 0.0
            requested = child.stop_reason
            child.release()
            exit_info = ExitInfo.of_returncode(code, process.pid)
            if self.ctx.stopping:
                continue
            if requested is None:
                log.warning("%s (pid %d) died: %s after %.1fs", child.name, process.pid, exit_info.how(), uptime)
            else:
                log.info("%s (pid %d) stopped (%s): %s", child.name, process.pid, requested, exit_info.how())
            self.after_exit(child, uptime_s=uptime, ready_for_s=ready_for, exit_info=exit_info,
                            requested=requested)

    def after_exit(self, child: Child, *, uptime_s: float, exit_info: ExitInfo,
                   requested: StopReason | None, ready_for_s: float = 0.0) -> None:
        """Record the exit, then schedule the restart (backoff) or give the role up."""
        if requested is None:
            crashed = exit_info.crashed
            self.ctx.event(child.name, "crash" if crashed else "exit",
                           {**exit_info.as_json(), "uptimeSeconds": round(uptime_s, 3),
                            "restartsInARow": child.in_a_row},
                           "error" if crashed else "warning")
        self.ctx.recorder.exited(child.name, child.spec.role, child.spec.instance_id,
                                 status=exited_status(exit_info, requested), pid=exit_info.pid or 0,
                                 error=None if requested else exit_info.text(), exited_at=time.time())
        policy = child.policy
        if policy.was_stable(ready_for_s):
            child.in_a_row = 0
        if policy.gives_up_after(child.in_a_row):
            self.give_up(child, exit_info)
            return
        child.in_a_row += 1
        child.restarts += 1
        delay_ms = policy.delay_ms(child.in_a_row)
        child.state = "waiting"
        child.next_start_at = self.ctx.clock() + delay_ms / 1000
        child.pending_restart = RestartPlan(
            reason=requested or ("crash" if exit_info.crashed else "exit"), attempt=child.in_a_row,
            delay_ms=delay_ms, old_pid=exit_info.pid, max_restarts=policy.max_restarts)
        log.info("%s restarts in %d ms (%d in a row, at most %d)", child.name, delay_ms, child.in_a_row,
                 policy.max_restarts)
        self.ctx.broadcast(child, "restarting", exit_info.pid, publish=True, delay_ms=delay_ms)

    def give_up(self, child: Child, exit_info: ExitInfo) -> None:
        """Leave the slot down; a fatal role (the api) also ends the orchestrator (exit 1)."""
        child.state = "given_up"
        fatal = child.policy.fatal_on_give_up
        log.critical("%s crashed %d time(s) in a row: giving up%s", child.name, child.in_a_row + 1,
                     "; stopping everything" if fatal else "; the other roles keep running")
        self.ctx.event(child.name, "give_up", {"restarts": child.in_a_row, "maxRestarts": child.policy.max_restarts,
                                               "lastExit": exit_info.as_json(), "fatal": fatal}, "critical")
        self.ctx.recorder.exited(child.name, child.spec.role, child.spec.instance_id, status="errored",
                                 pid=exit_info.pid or 0, error=f"given up after {child.in_a_row} restarts",
                                 exited_at=time.time())
        self.ctx.broadcast(child, "given_up", exit_info.pid, publish=True)
        if fatal:
            self.ctx.exit_code = EXIT_GAVE_UP
