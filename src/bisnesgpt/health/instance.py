"""Which process instance this is, and whether another one on this node still runs.

A process instance is named by its node (the pid namespace it lives in: the machine's
boot id and the pid namespace, so two containers with the same hostname are told apart),
its pid and its start time: ``instance_key``. A process on the same node judges another
by its pid and start time (a pid reused by a newer process does not count as alive), a
process elsewhere only by its heartbeat.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from dataclasses import dataclass

import psutil

# A pid's start time as psutil reads it twice may differ by a clock tick.
START_TIME_TOLERANCE_S = 1.0


@functools.cache
def node_id() -> str:
    """This node's pid namespace: ``<boot id>/<pid namespace inode>`` (the hostname where /proc is absent)."""
    boot = socket.gethostname()
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
        boot = file.read().strip()
    namespace = "0"
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    return f"{boot}/{namespace}"


def start_time(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), or None when there is no such process."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def process_alive(pid: int, started_at: float | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given ``started_at``, is still the process that started then."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.Error:
        return False
    return started_at is None or abs(created - started_at) <= START_TIME_TOLERANCE_S


def supervisor_of(ppid: int, *, orchestrated: bool) -> str:
    """What supervises this process, for the operator: ``orchestrator``, ``pm2``, ``systemd`` or the parent's name."""
    if orchestrated:
        return "orchestrator"
    try:
        parent = psutil.Process(ppid)
        name = parent.name()
        title = " ".join(parent.cmdline())
    except psutil.Error:
        return "unknown"
    if "PM2" in name or "PM2" in title:
        return "pm2"
    if name in ("systemd", "init"):
        return "systemd"
    return name[:40] or "unknown"


@dataclass(frozen=True)
class InstanceIdentity:
    """One process instance: its slot (``process_name``), node, pid, parent and start time."""

    process_name: str
    role: str
    host: str
    node: str
    pid: int
    ppid: int
    supervisor: str
    started_at: float  # epoch seconds, the pid's own start time

    @property
    def instance_key(self) -> str:
        """``<name>@<node>:<pid>:<start ms>``: unique for every process that ever ran (and every
        slot one process serves, as tests do)."""
        return f"{self.process_name}@{self.node}:{self.pid}:{int(self.started_at * 1000)}"

    @classmethod
    def of_this_process(cls, process_name: str, role: str, *, host: str, orchestrated: bool) -> InstanceIdentity:
        """The identity of the running process."""
        pid, ppid = os.getpid(), os.getppid()
        return cls(process_name=process_name, role=role, host=host, node=node_id(), pid=pid, ppid=ppid,
                   supervisor=supervisor_of(ppid, orchestrated=orchestrated),
                   started_at=start_time(pid) or 0.0)
