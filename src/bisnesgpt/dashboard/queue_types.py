"""The shapes the queue admin answers: queue views, job pages, filters and action results.

``queues.py`` (``QueueAdmin``) builds them; the dashboard's routes return them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from typing_extensions import TypedDict

from bisnesgpt.api.schemas.common import JsonObject
from bisnesgpt.messaging import store

SKIPPED_SHOWN = 50

class Rates(TypedDict):
    """Jobs completed and failed in the last minute."""

    completed: int
    failed: int


class Recent(TypedDict):
    """Jobs completed and failed in the last hour, from the queue's event stream.

    Completed jobs are removed as they finish (a send job's id is its message id, and a
    message's job may be added again), so ``counts.completed`` stays 0: this is what
    "completed" means on the queues page. ``sinceMs`` is where the count starts: an hour
    ago, or later when BullMQ trimmed the stream (then the numbers are lower bounds).
    """

    completed: int
    failed: int
    sinceMs: int
    trimmed: bool


class QueueView(TypedDict):
    """A queue's counts by job state, paused flag, recent and last-minute rates and who consumes it."""

    name: str
    jobName: str
    consumer: str
    paused: bool
    counts: dict[str, int]
    ratePerMinute: Rates
    lastHour: Recent
    sendQueue: bool


class JobMessage(TypedDict):
    """The message a failed send job carries, as it stands in the database."""

    messageId: str
    companyId: str
    phoneIndex: int
    status: str
    errorCode: str | None
    errorTitle: str | None
    chatId: str


class FailedJob(TypedDict):
    """A failed job: its error, attempts, when, and (send queues) its message."""

    id: str
    name: str
    data: JsonObject
    failedReason: str | None
    attemptsMade: int
    attempts: int
    timestamp: int
    finishedOn: int | None
    stacktrace: list[str]
    message: JobMessage | None


class FailedJobsPage(TypedDict):
    """A page of a queue's failed jobs, newest first."""

    queue: str
    total: int
    start: int
    jobs: list[FailedJob]


JobState = Literal["waiting", "active", "delayed", "prioritized", "completed", "failed"]
JOB_STATES: tuple[JobState, ...] = ("waiting", "active", "delayed", "prioritized", "completed", "failed")


class JobDetail(TypedDict):
    """A job as the queue browser shows it: data (ids only), options, attempts, times, error, stack and log."""

    id: str
    name: str
    state: JobState
    data: JsonObject
    opts: JsonObject
    attemptsMade: int
    attempts: int
    timestamp: int
    processedOn: int | None
    finishedOn: int | None
    delayUntil: int | None
    failedReason: str | None
    stacktrace: list[str]
    log: list[str]
    message: JobMessage | None


class JobsPage(TypedDict):
    """A page of a queue's jobs in one state, newest first (``total``: after the filters)."""

    queue: str
    state: JobState
    total: int
    start: int
    jobs: list[JobDetail]


@dataclass(frozen=True)
class JobFilter:
    """Which failed jobs to show or retry: of a company, a phone, an error code (None: any)."""

    company_id: str | None = None
    phone_index: int | None = None
    error_code: str | None = None

    @property
    def any(self) -> bool:
        """Whether any filter is set."""
        return self.company_id is not None or self.phone_index is not None or self.error_code is not None

    def keeps(self, job: Any, message: store.MessageRecord | None) -> bool:
        """Whether the job (and the message it sends, if known) passes the filter."""
        data = job.data if isinstance(job.data, dict) else {}
        company = message.company_id if message else data.get("companyId")
        phone = message.phone_index if message else data.get("phoneIndex")
        code = message.error_code if message and message.error_code else str(job.failedReason or "").split(":")[0]
        return ((self.company_id is None or company == self.company_id)
                and (self.phone_index is None or phone == self.phone_index)
                and (self.error_code is None or code.strip() == self.error_code))


class Promoted(TypedDict):
    """A delayed job moved to waiting now."""

    queue: str
    jobId: str
    promoted: bool


class Retried(TypedDict):
    """One job retried (``messageRequeued``: its failed message went back to ``queued`` first)."""

    queue: str
    jobId: str
    retried: bool
    messageRequeued: bool


class SkippedJob(TypedDict):
    """A job a bulk retry left alone, and why."""

    jobId: str
    reason: str


class BulkRetried(TypedDict):
    """What a bulk retry did: retried, skipped (the first 50 shown), still failed."""

    queue: str
    done: int
    skipped: list[SkippedJob]
    skippedCount: int
    remaining: int


class JobRemoved(TypedDict):
    """A job removed, and the state it was in."""

    queue: str
    jobId: str
    removed: bool
    state: str


class Paused(TypedDict):
    """A queue's paused flag after pause / resume."""

    queue: str
    paused: bool


class Cleaned(TypedDict):
    """How many completed jobs were removed."""

    queue: str
    removed: int


@dataclass
class BulkResult:
    """The running tally of a bulk retry."""

    done: int = 0
    skipped: list[SkippedJob] = field(default_factory=list)
    remaining: int = 0

    def answer(self, queue: str) -> BulkRetried:
        """The tally as the route answers it (and the event records it)."""
        return {"queue": queue, "done": self.done, "skipped": self.skipped[:SKIPPED_SHOWN],
                "skippedCount": len(self.skipped), "remaining": self.remaining}
