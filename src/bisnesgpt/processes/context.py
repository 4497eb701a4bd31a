"""What every component of a process gets: settings, pools, clients, recorders."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TypedDict

import redis.asyncio as aioredis

from bisnesgpt.config import Role, Settings
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.health.instance import InstanceIdentity
from bisnesgpt.messaging.queues import QueueProducer


class PeerSighting(TypedDict):
    """What one channel last said about a sibling: its status and pid, and when we heard it."""

    status: str | None
    pid: int | None
    seenAt: float


class Peer(TypedDict, total=False):
    """The last known status of another process, merged from the orchestrator's relay
    (``supervisor``) and the ``process:status`` / ``process:heartbeat`` channels (``redis``)."""

    status: str | None
    pid: int | None
    role: str | None
    host: str | None
    supervisor: PeerSighting
    redis: PeerSighting


def process_name_for(role: Role, instance_id: int) -> str:
    """Instance 0 is named after its role (the original's names); others ``<role>-<n>``."""
    return role if instance_id == 0 else f"{role}-{instance_id}"


@dataclass
class ProcessContext:
    """A running process's shared parts, opened after the process started (never at import)."""

    settings: Settings
    role: Role
    process_name: str
    database_url: str
    redis_url: str
    db: Database
    redis: aioredis.Redis
    queues: QueueProducer
    events: EventRecorder
    # The one subscription of this process: components register their channels with
    # ``coordinator.on(channel, handler)`` (see ``coordination/coordinator.py``).
    coordinator: Coordinator
    # This process's lease holder id (``coordination.leases.holder_id``).
    holder: str
    # The deployment's pub/sub namespace (``coordination.channels``): every publish names it.
    namespace: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_monotonic: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the process serves HTTP and its components run (/health/ready, "starting" before).
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Last known status of the other processes, by process name (orchestrator broadcasts
    # and the process:status / process:heartbeat channels).
    peers: dict[str, Peer] = field(default_factory=dict)
    # True when an orchestrator supervises this process (BISNESGPT_SUPERVISOR_FD given).
    supervised: bool = False
    # Which instance this is (node, pid, start time, supervisor): the key of its process_health row.
    identity: InstanceIdentity = field(init=False)

    def __post_init__(self) -> None:
        self.identity = InstanceIdentity.of_this_process(self.process_name, self.role, host=self.host,
                                                         orchestrated=self.supervised)

    @property
    def uptime(self) -> float:
        """Seconds since this process started."""
        return time.monotonic() - self.started_monotonic
