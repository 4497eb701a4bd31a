"""Queue depth straight from BullMQ's Redis keys (the original key layout, prefix ``bull``).

Read with one pipelined round trip, so the heartbeat, ``/health/all`` and ``bisnesgpt
doctor`` can afford it: ``wait``/``active``/``paused`` are lists, ``delayed``/
``prioritized``/``failed`` sorted sets; the oldest waiting job is the right end of ``wait``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from bisnesgpt.messaging.queues import ALL_QUEUES, DEFAULT_PREFIX, QueueSpec


@dataclass(frozen=True)
class QueueDepth:
    """How many jobs of a queue are in each state, and how long the oldest has waited."""

    name: str
    waiting: int
    active: int
    delayed: int
    prioritized: int
    paused: int
    failed: int
    oldest_waiting_age_s: float | None

    @property
    def backlog(self) -> int:
        """Jobs ready or scheduled to run that no worker holds yet."""
        return self.waiting + self.delayed + self.prioritized + self.paused

    def as_dict(self) -> dict[str, int | float | None]:
        """The JSON form (``doctor --json``): the counts, the backlog and ``oldestWaitingAgeSeconds``."""
        return {"waiting": self.waiting, "active": self.active, "delayed": self.delayed,
                "prioritized": self.prioritized, "paused": self.paused, "failed": self.failed,
                "backlog": self.backlog, "oldestWaitingAgeSeconds": self.oldest_waiting_age_s}


def queues_of_role(role: str) -> tuple[QueueSpec, ...]:
    """The queues a role consumes (legacy consumes all of them)."""
    if role == "legacy":
        return ALL_QUEUES
    return tuple(spec for spec in ALL_QUEUES if spec.process_name == role)


async def queue_depths(redis: aioredis.Redis, names: Sequence[str], *,
                       prefix: str = DEFAULT_PREFIX) -> dict[str, QueueDepth]:
    """Depth of each named queue; raises RedisError/OSError when Redis is unreachable."""
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        key = f"{prefix}:{name}"
        pipe.llen(f"{key}:wait")
        pipe.llen(f"{key}:active")
        pipe.zcard(f"{key}:delayed")
        pipe.zcard(f"{key}:prioritized")
        pipe.llen(f"{key}:paused")
        pipe.zcard(f"{key}:failed")
        pipe.lindex(f"{key}:wait", -1)
    results = await pipe.execute()
    oldest_ids = {name: results[i * 7 + 6] for i, name in enumerate(names)}
    timestamps: dict[str, str | bytes | None] = {}
    waiting_ids = [(name, job_id) for name, job_id in oldest_ids.items() if job_id]
    if waiting_ids:
        pipe = redis.pipeline(transaction=False)
        for name, job_id in waiting_ids:
            pipe.hget(f"{prefix}:{name}:{_text(job_id)}", "timestamp")
        for (name, _), stamp in zip(waiting_ids, await pipe.execute(), strict=True):
            timestamps[name] = stamp
    now_ms = time.time() * 1000
    depths = {}
    for i, name in enumerate(names):
        waiting, active, delayed, prioritized, paused, failed = (int(v or 0) for v in results[i * 7:i * 7 + 6])
        stamp = timestamps.get(name)
        age = round(max(0.0, (now_ms - float(stamp)) / 1000), 3) if stamp else None
        depths[name] = QueueDepth(name, waiting, active, delayed, prioritized, paused, failed, age)
    return depths


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
