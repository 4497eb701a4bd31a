"""Judging the living: a child silent too long is hung, one over its memory limit too big.

Both are stopped the same way (SIGTERM: the child drains; SIGKILL of its whole group at
the kill deadline) and then restarted like any exit, counting as a restart in a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bisnesgpt.orchestrator.children import Child, StopReason
from bisnesgpt.orchestrator.context import SupervisorContext
from bisnesgpt.orchestrator.spawning import tree_rss

log = logging.getLogger("bisnesgpt.orchestrator")

# After SHUTDOWN_TIMEOUT a child still has to stop its components and close its pools.
KILL_GRACE_S = 2.0


def stop_child(ctx: SupervisorContext, child: Child, reason: StopReason) -> None:
    """Ask a child to stop (SIGTERM: it drains); SIGKILL its group at the deadline."""
    if child.process is None:
        return
    child.state = "stopping"
    child.stop_reason = reason
    child.kill_at = ctx.clock() + ctx.settings.shutdown_timeout + KILL_GRACE_S
    child.process.terminate()
    ctx.broadcast(child, "stopping", child.pid, publish=True, reason=reason)


class Judge:
    """The checks of each turn of the loop over the children that run."""

    def __init__(self, ctx: SupervisorContext, *, measure_rss: Callable[[int], int] = tree_rss) -> None:
        self.ctx = ctx
        self.measure_rss = measure_rss
        self._next_memory_check = 0.0

    def check_heartbeats(self, now: float) -> None:
        """Stop every child silent for MAX_HEARTBEAT_AGE (CHILD_START_TIMEOUT before its first ping)."""
        settings = self.ctx.settings
        max_age = settings.max_heartbeat_age / 1000
        start_timeout = settings.child_start_timeout / 1000
        for child in self.ctx.children:
            if child.state not in ("starting", "online") or not child.alive:
                continue
            if child.first_ping_at is None:
                silent, limit = now - child.started_at, start_timeout
            else:
                silent, limit = now - child.last_ping, max_age
            if silent > limit:
                log.error("%s (pid %s) silent for %.1fs (limit %.1fs): hung; stopping it", child.name, child.pid,
                          silent, limit)
                self.ctx.event(child.name, "hang", {"pid": child.pid, "silentSeconds": round(silent, 3),
                                                    "limitSeconds": limit, "pinged": child.first_ping_at is not None},
                               "error")
                stop_child(self.ctx, child, "hang")

    def memory_check_due(self, now: float) -> bool:
        """True once per MEMORY_CHECK_INTERVAL (measuring a process tree is not free)."""
        if now < self._next_memory_check:
            return False
        self._next_memory_check = now + self.ctx.settings.memory_check_interval / 1000
        return True

    def check_memory(self) -> None:
        """Drain and restart every online child whose tree's RSS is over its role's limit."""
        for child in self.ctx.children:
            limit = child.policy.max_memory_bytes
            if not limit or child.state != "online" or child.pid is None:
                continue
            rss = self.measure_rss(child.pid)
            if rss > limit:
                log.warning("%s (pid %d) RSS %.1f MB over its limit %.1f MB: restarting after draining",
                            child.name, child.pid, rss / 2**20, limit / 2**20)
                self.ctx.event(child.name, "memory_restart", {"pid": child.pid, "rssBytes": rss,
                                                              "limitBytes": limit}, "warning")
                stop_child(self.ctx, child, "memory")

    def enforce_kill_deadlines(self, now: float) -> None:
        """SIGKILL the group of every child asked to stop that overstayed its deadline."""
        for child in self.ctx.children:
            if child.kill_at is not None and now >= child.kill_at and child.alive:
                assert child.process is not None
                log.warning("%s (pid %d) did not stop in time: SIGKILL", child.name, child.process.pid)
                self.ctx.event(child.name, "killed", {"pid": child.process.pid, "reason": child.stop_reason},
                               "warning")
                child.process.kill_group()
                child.kill_at = None
