"""Shutdown: SIGTERM every child, wait for them to drain, SIGKILL whoever overstays.

The wait is SHUTDOWN_TIMEOUT plus ``KILL_GRACE_S`` (a child still has to stop its
components and close its pools after draining); a second stop signal ends it at once.
Children's messages are still read meanwhile, so their ``draining``/``stopped`` statuses
reach the siblings that are still up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from bisnesgpt.coordination.channels import PROCESS_SHUTDOWN
from bisnesgpt.orchestrator.context import ORCHESTRATOR, SupervisorContext
from bisnesgpt.orchestrator.judging import KILL_GRACE_S, stop_child

log = logging.getLogger("bisnesgpt.orchestrator")


def shut_down(ctx: SupervisorContext, reason: str, *, wait: Callable[[float], None],
              signalled_again: Callable[[], bool]) -> int:
    """Stop every child and return the orchestrator's exit status.

    ``wait(seconds)`` waits for (and handles) the children's messages; ``signalled_again()``
    says whether another stop signal came meanwhile.
    """
    ctx.stopping = True
    began = ctx.clock()
    alive = [c for c in ctx.children if c.alive]
    # An announcement (no "targets": the children are told by SIGTERM, the reliable path).
    ctx.recorder.publish(PROCESS_SHUTDOWN, {"processName": ORCHESTRATOR, "host": ctx.host, "pid": os.getpid(),
                                            "reason": reason, "stopping": [c.name for c in alive]})
    for child in alive:
        stop_child(ctx, child, "shutdown")
    deadline = began + ctx.settings.shutdown_timeout + KILL_GRACE_S
    while any(c.alive for c in alive) and ctx.clock() < deadline:
        wait(0.05)
        if signalled_again():
            log.warning("second signal: killing the children now")
            break
    killed = []
    for child in alive:
        if child.alive:
            assert child.process is not None
            killed.append(child.name)
            log.warning("%s (pid %d) did not stop in time: SIGKILL", child.name, child.process.pid)
            child.process.kill_group()
            # It could not write its own last word: its row and start attempt say it was stopped.
            ctx.recorder.exited(child.name, child.spec.role, child.spec.instance_id, status="stopped",
                                pid=child.process.pid, error="killed at shutdown (did not stop in time)",
                                exited_at=time.time())
    for child in ctx.children:
        if child.process is not None:
            child.process.wait()
            child.release()
    took = ctx.clock() - began
    log.info("all children stopped in %.2fs%s", took, f" (killed: {', '.join(killed)})" if killed else "")
    ctx.event(ORCHESTRATOR, "stop", {"pid": os.getpid(), "reason": reason, "seconds": round(took, 3),
                                     "killed": killed, "exitCode": ctx.exit_code},
              "critical" if ctx.exit_code else "info")
    return ctx.exit_code
