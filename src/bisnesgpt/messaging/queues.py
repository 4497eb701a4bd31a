"""Queue names, job names and per-queue defaults (ARCHITECTURE §3), and the producer.

Names and the BullMQ key layout (prefix ``bull``) are the original system's, so Node BullMQ
producers/consumers and Bull Board see the same queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

from redis.exceptions import RedisError

from bisnesgpt.core.errors import QueueUnavailable, ValidationFailed
from bisnesgpt.infra.redis import redis_client

if TYPE_CHECKING:
    from bullmq import Queue

log = logging.getLogger(__name__)

WWEBJS_QUEUE = "wwebjs-messages"
META_QUEUE = "meta-messages"
STATUS_QUEUE = "status-updates"
WEBHOOK_QUEUE = "webhook-events"
MEDIA_QUEUE = "media-downloads"

SEND_JOB = "send-message"
STATUS_JOB = "status-update"
WEBHOOK_JOB = "webhook-event"
MEDIA_JOB = "media-download"

DEFAULT_PREFIX = "bull"


class Backoff(TypedDict):
    """BullMQ's retry backoff: ``delay`` ms, doubled per attempt when exponential."""

    type: Literal["exponential", "fixed"]
    delay: int


class JobOptions(TypedDict):
    """The BullMQ options every job is added with (``delay`` only when delayed)."""

    jobId: str
    attempts: int
    backoff: Backoff
    removeOnComplete: bool
    removeOnFail: bool
    delay: NotRequired[int]


@dataclass(frozen=True)
class QueueSpec:
    """One queue: its name and job name, retry policy, worker concurrency and owning engine."""

    name: str
    job_name: str
    attempts: int
    backoff: Backoff
    concurrency: int
    process_name: str

    def job_options(self, job_id: str, *, delay_ms: int = 0) -> JobOptions:
        """Options for a job with id ``job_id``: the queue's attempts and backoff, kept when failed."""
        opts: JobOptions = {
            "jobId": job_id,
            "attempts": self.attempts,
            "backoff": self.backoff.copy(),
            "removeOnComplete": True,
            "removeOnFail": False,
        }
        if delay_ms > 0:
            opts["delay"] = delay_ms
        return opts


WWEBJS = QueueSpec(WWEBJS_QUEUE, SEND_JOB, 3, {"type": "exponential", "delay": 2000}, 5, "wwebjs")
META = QueueSpec(META_QUEUE, SEND_JOB, 3, {"type": "exponential", "delay": 1000}, 10, "meta")
STATUS_UPDATES = QueueSpec(STATUS_QUEUE, STATUS_JOB, 3, {"type": "exponential", "delay": 1000}, 10, "meta")
WEBHOOK_EVENTS = QueueSpec(WEBHOOK_QUEUE, WEBHOOK_JOB, 2, {"type": "fixed", "delay": 1000}, 10, "meta")

# Inbound media downloads of the Cloud API engine (its process fetches with the phone's token);
# attempts and backoff come from MEDIA_DOWNLOAD_* settings when the job is added.
MEDIA_DOWNLOADS = QueueSpec(MEDIA_QUEUE, MEDIA_JOB, 8, {"type": "exponential", "delay": 2000}, 8, "meta")

ALL_QUEUES: tuple[QueueSpec, ...] = (WWEBJS, META, STATUS_UPDATES, WEBHOOK_EVENTS, MEDIA_DOWNLOADS)
QUEUES_BY_NAME = {spec.name: spec for spec in ALL_QUEUES}

# connection_type -> the queue of the engine that owns it (NULL means wwebjs, as originally).
CONNECTION_TYPE_QUEUES: dict[str | None, QueueSpec] = {
    None: WWEBJS,
    "wwebjs": WWEBJS,
    "meta_direct": META,
    "meta_embedded": META,
    "360dialog": META,
}


def queue_for_connection_type(connection_type: str | None) -> QueueSpec:
    """The send queue of a phone's connection type (422 problem for an unknown one)."""
    try:
        return CONNECTION_TYPE_QUEUES[connection_type]
    except KeyError:
        raise ValidationFailed(
            f"unknown connection_type {connection_type!r}",
            errors=[{"field": "connection_type", "message": f"unknown value {connection_type!r}"}],
        ) from None


class QueueProducer:
    """Adds jobs to the product's queues. One per process, opened after start.

    Each queue gets its own fail-fast Redis client (bullmq's default client retries for
    minutes): with Redis down, ``add`` fails within ``timeout`` and the caller relies on the
    outbox reconciler, because the message row is already durable.
    """

    def __init__(self, redis_url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> None:
        self._redis_url = redis_url
        self._prefix = prefix
        self._timeout = timeout
        self._queues: dict[str, Queue] = {}

    @property
    def prefix(self) -> str:
        """The BullMQ key prefix (``bull``): keys are ``<prefix>:<queue>:...``."""
        return self._prefix

    def queue(self, name: str) -> Queue:
        """The underlying ``bullmq.Queue`` (for counts, admin actions)."""
        if name not in self._queues:
            from bullmq import Queue

            client = redis_client(self._redis_url, name=f"bisnesgpt:producer:{name}")
            self._queues[name] = Queue(name, {"connection": client, "prefix": self._prefix})
        return self._queues[name]

    async def add(self, spec: QueueSpec, job_id: str, data: Mapping[str, object], *, delay_ms: int = 0) -> None:
        """Add a job; an existing job with the same id is left alone (BullMQ semantics)."""
        try:
            await asyncio.wait_for(
                self.queue(spec.name).add(spec.job_name, data, spec.job_options(job_id, delay_ms=delay_ms)),
                self._timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable(f"cannot enqueue to {spec.name}: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        """Close every queue's Redis client (a queue asked for later opens a new one)."""
        queues, self._queues = self._queues, {}
        for queue in queues.values():
            try:
                await queue.close()
            except (RedisError, OSError) as exc:
                log.debug("closing queue: %s", exc)
