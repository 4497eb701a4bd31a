"""The words of health: what a process says of itself, what its row says, and the verdict.

``judge`` is the one rule ``/health/all``, ``bisnesgpt status`` and ``doctor`` apply to a
``process_health`` row; ``v_process_health_overview`` (migration 0009) applies the same in
SQL, in the same query, so the two always agree. The README lists each status with its
timings.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# What /health says of this process: starting until it serves; degraded when only an
# optional dependency fails (the api without Redis: it still accepts and stores sends).
ReportStatus = Literal["starting", "healthy", "degraded", "unhealthy", "draining"]
# process_health.status as this product writes it: the heartbeat's word (unhealthy is
# ``error``), the last heartbeat's ``stopped``, an exit seen by the orchestrator or by a
# process of the same node (``crashed``, ``restarting`` for a restart that was asked for,
# ``errored`` once given up) and ``disabled``.
RowStatus = Literal["starting", "healthy", "degraded", "error", "draining", "stopped", "crashed", "restarting",
                    "errored", "disabled"]
# A process as judged (see ``judge``).
JudgedStatus = Literal["healthy", "degraded", "starting", "unhealthy", "unresponsive", "draining", "down",
                       "disabled"]
# A role: all its expected processes ok, some, none, or switched off.
RoleStatus = Literal["healthy", "partial", "down", "disabled"]

# Row statuses of a process that is not running (any more).
DEAD_STATUSES = frozenset({"stopped", "crashed", "errored", "restarting", "down"})
# Verdicts of a process that serves.
OK_STATUSES: frozenset[JudgedStatus] = frozenset({"healthy", "degraded"})
# What a living process reported, as its verdict (anything else it says is unhealthy).
AS_REPORTED: dict[str, JudgedStatus] = {"starting": "starting", "draining": "draining", "degraded": "degraded",
                                        "healthy": "healthy"}
# A process silent for this many of its heartbeat intervals is unresponsive.
MISSED_HEARTBEATS = 2


class HeartbeatMetadata(TypedDict, total=False):
    """``process_health.metadata`` as a heartbeat writes it (``monitor.py``)."""

    failing: dict[str, str]  # check name -> detail, for the failing checks
    eventLoopLagMs: float
    queueDepth: dict[str, int]
    instanceId: int
    maxHeartbeatAgeMs: int  # v_process_health_overview judges the row by the process's own limit
    heartbeatIntervalMs: int  # ... and by its own interval (unresponsive after two missed)


def report_to_row(status: ReportStatus) -> RowStatus:
    """The row status a heartbeat writes for a report (``unhealthy`` is the original's ``error``)."""
    return "error" if status == "unhealthy" else status


def judge(reported: str | None, heartbeat_age_s: float | None, max_age_s: float,
          interval_s: float | None = None) -> JudgedStatus:
    """One process's verdict from its row.

    * ``disabled`` — its role is switched off;
    * ``down`` — never heartbeated, silent for ``max_age_s``, or known not to run
      (stopped, crashed, restarting, given up);
    * ``unresponsive`` — silent for ``MISSED_HEARTBEATS`` of its declared intervals;
    * ``starting``, ``draining``, ``degraded`` (serving, an optional dependency missing) —
      as it reported; any other report but ``healthy`` is ``unhealthy``;
    * without a declared interval (rows of the Node server) a heartbeat half ``max_age_s``
      old is ``degraded``, as the original judged;
    * ``healthy``.
    """
    if reported == "disabled":
        return "disabled"
    if heartbeat_age_s is None or reported in DEAD_STATUSES or heartbeat_age_s >= max_age_s:
        return "down"
    if interval_s is not None and heartbeat_age_s >= MISSED_HEARTBEATS * interval_s:
        return "unresponsive"
    verdict = AS_REPORTED.get(reported or "", "unhealthy")
    if verdict == "healthy" and interval_s is None and heartbeat_age_s >= max_age_s / 2:
        return "degraded"
    return verdict


def declared_ms(metadata: HeartbeatMetadata | None, key: Literal["maxHeartbeatAgeMs", "heartbeatIntervalMs"]
                ) -> float | None:
    """A limit the process declared in its heartbeat metadata, in seconds (the view reads the same)."""
    value = (metadata or {}).get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9:
        return value / 1000
    return None
