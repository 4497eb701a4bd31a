"""Operator actions on the BullMQ queues: counts, rates, failed jobs, retry, remove, pause.

Everything goes through ``bullmq.Queue`` (``ctx.queues.queue(name)``: the original key
layout, so Bull Board sees the same) except the rate, read from the queue's own event
stream (``bull:<queue>:events``: one entry per completed/failed job, ids are timestamps).

Retrying a failed *send* job re-queues its message first (``requeue.py``): the worker skips
a message that is already ``failed``. A message already past sending (``sent`` …) is not
retried at all — that would send it twice — and the operator is told to remove the job.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from bisnesgpt.api.schemas.common import JsonObject
from bisnesgpt.core.errors import BisnesgptError, Conflict, NotFound, QueueUnavailable
from bisnesgpt.dashboard.queue_types import (
    BulkResult,
    BulkRetried,
    Cleaned,
    FailedJob,
    FailedJobsPage,
    JobDetail,
    JobFilter,
    JobMessage,
    JobRemoved,
    JobsPage,
    JobState,
    Paused,
    Promoted,
    QueueView,
    Rates,
    Recent,
    Retried,
)
from bisnesgpt.dashboard.requeue import requeue_failed
from bisnesgpt.db.queries import load_queries
from bisnesgpt.infra.bullmq_worker import promote
from bisnesgpt.messaging import store
from bisnesgpt.messaging.node_jobs import parse_job_data
from bisnesgpt.messaging.queues import ALL_QUEUES, META_QUEUE, QUEUES_BY_NAME, WWEBJS_QUEUE
from bisnesgpt.messaging.send_processor import DELAYED_RETRIES_KEY
from bisnesgpt.messaging.states import PAST_SENDING
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.dashboard")

SEND_QUEUES = frozenset({WWEBJS_QUEUE, META_QUEUE})
COUNT_TYPES = ("waiting", "active", "delayed", "prioritized", "completed", "failed", "paused")
RATE_WINDOW_MS = 60_000
RECENT_WINDOW_MS = 3_600_000
RATE_MAX_EVENTS = 20_000
EVENTS_KEPT = 9_000  # BullMQ trims a queue's event stream to about 10,000 entries (maxLenEvents)
REDIS_TIMEOUT_S = 5.0
BULK_LIMIT = 1_000  # failed jobs retried / completed jobs cleaned per click
# What a job list shows of a job's data: ids and routing, never the message body.
JOB_DATA_SHOWN = ("messageId", "companyId", "phoneIndex", "provider", "kind", "type")
# What the queue browser shows of a job's options.
JOB_OPTS_SHOWN = ("jobId", "attempts", "backoff", "delay", "priority", "removeOnComplete", "removeOnFail")
LOG_LINES = 50
T = TypeVar("T")



def queue_names() -> list[str]:
    """Every queue's name, as the system knows them."""
    return [spec.name for spec in ALL_QUEUES]


class QueueAdmin:
    """Reading and acting on the queues through ``bullmq.Queue``, with send jobs' messages kept in step."""

    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx

    def _queue(self, name: str) -> Any:
        if name not in QUEUES_BY_NAME:
            raise NotFound(f"no queue named {name!r}; queues: {', '.join(queue_names())}")
        return self.ctx.queues.queue(name)

    async def _redis(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(call(), REDIS_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable(f"{what}: Redis unavailable ({exc or type(exc).__name__})") from exc

    # --- reading ----------------------------------------------------------------------------

    async def overview(self) -> list[QueueView]:
        """Counts, paused flag and last-minute rates of every queue."""
        return list(await asyncio.gather(*(self.queue_view(spec.name) for spec in ALL_QUEUES)))

    async def paused_queues(self) -> set[str]:
        """The names of the queues that are paused now."""
        names = [spec.name for spec in ALL_QUEUES]
        flags = await self._redis("paused queues", lambda: asyncio.gather(*(self._queue(n).isPaused() for n in names)))
        return {name for name, paused in zip(names, flags, strict=True) if paused}

    async def queue_view(self, name: str) -> QueueView:
        """One queue's counts, paused flag and last-minute rates (404 for an unknown name)."""
        queue = self._queue(name)
        counts = await self._redis(f"counts of {name}", lambda: queue.getJobCounts(*COUNT_TYPES))
        paused = await self._redis(f"state of {name}", queue.isPaused)
        rates, recent = await self._redis(f"rate of {name}", lambda: self._rates(name))
        spec = QUEUES_BY_NAME[name]
        return {"name": name, "jobName": spec.job_name, "consumer": spec.process_name, "paused": bool(paused),
                "counts": {t: int(counts.get(t, 0) or 0) for t in COUNT_TYPES}, "ratePerMinute": rates,
                "lastHour": recent, "sendQueue": name in SEND_QUEUES}

    async def _rates(self, name: str) -> tuple[Rates, Recent]:
        """Jobs completed / failed in the last minute and the last hour, from the queue's event stream."""
        now = int(time.time() * 1000)
        minute_ago, hour_ago = now - RATE_WINDOW_MS, now - RECENT_WINDOW_MS
        key = f"{self.ctx.queues.prefix}:{name}:events"
        entries = await self.ctx.redis.xrevrange(key, "+", f"{hour_ago}-0", count=RATE_MAX_EVENTS)
        minute: Counter[str] = Counter()
        hour: Counter[str] = Counter()
        oldest = now
        for entry_id, fields in entries:
            event = fields.get(b"event") or fields.get("event")
            name_ = event.decode() if isinstance(event, bytes) else str(event)
            at = _entry_ms(entry_id)
            oldest = min(oldest, at)
            hour[name_] += 1
            if at >= minute_ago:
                minute[name_] += 1
        # The stream starts after an hour ago although it is as long as BullMQ keeps it: it was trimmed.
        first = await self.ctx.redis.xrange(key, "-", "+", count=1) if entries else []
        trimmed = len(entries) >= RATE_MAX_EVENTS or bool(
            first and _entry_ms(first[0][0]) > hour_ago and await self.ctx.redis.xlen(key) >= EVENTS_KEPT)
        since = max(hour_ago, oldest) if trimmed else hour_ago
        return ({"completed": minute["completed"], "failed": minute["failed"]},
                {"completed": hour["completed"], "failed": hour["failed"], "sinceMs": since, "trimmed": trimmed})

    async def failed_jobs(self, name: str, *, start: int = 0, limit: int = 50) -> FailedJobsPage:
        """Failed jobs, newest first, with their error, attempts and (send queues) message."""
        queue = self._queue(name)
        jobs = await self._redis(f"failed jobs of {name}", lambda: queue.getJobs(["failed"], start, start + limit - 1))
        total = await self._redis(f"counts of {name}", lambda: queue.getJobCountByTypes("failed"))
        refs: dict[str, str] = {}
        for job in jobs:
            try:
                refs[str(job.id)] = parse_job_data(job.id, job.data or {}).message_id
            except ValueError:
                continue
        messages: dict[str, store.MessageRecord] = {}
        if name in SEND_QUEUES and refs:
            rows = await self.ctx.db.fetch(SQL.messages_by_ids, list(set(refs.values())))
            messages = {r["message_id"]: store.MessageRecord.from_row(r) for r in rows}
        out: list[FailedJob] = []
        for job in sorted(jobs, key=lambda j: j.finishedOn or j.timestamp or 0, reverse=True):
            record = messages.get(refs.get(str(job.id), ""))
            out.append({
                "id": str(job.id), "name": job.name, "data": _job_data_view(job.data),
                "failedReason": job.failedReason, "attemptsMade": job.attemptsMade,
                "attempts": int((job.opts or {}).get("attempts") or 1),
                "timestamp": job.timestamp, "finishedOn": job.finishedOn or None,
                "stacktrace": (job.stacktrace or [])[-1:],
                "message": None if record is None else _job_message(record),
            })
        return {"queue": name, "total": int(total), "start": start, "jobs": out}

    async def jobs(self, name: str, state: JobState, *, start: int = 0, limit: int = 20,
                   filters: JobFilter | None = None) -> JobsPage:
        """A page of the queue's jobs in ``state``, newest first, in full (filters: failed jobs only)."""
        queue = self._queue(name)
        filters = filters or JobFilter()
        if filters.any:
            # Filtering needs each job's message: read up to BULK_LIMIT, filter, then page.
            jobs = await self._redis(f"{state} jobs of {name}", lambda: queue.getJobs([state], 0, BULK_LIMIT - 1))
            messages = await self._messages(name, jobs)
            kept = [j for j in jobs if filters.keeps(j, messages.get(self._ref(j) or ""))]
            total, page = len(kept), kept[start:start + limit]
        else:
            page = await self._redis(f"{state} jobs of {name}",
                                     lambda: queue.getJobs([state], start, start + limit - 1))
            total = int(await self._redis(f"counts of {name}", lambda: queue.getJobCountByTypes(state)))
            messages = await self._messages(name, page)
        out: list[JobDetail] = []
        for job in page:
            logs = await self._redis(f"log of {job.id}", functools.partial(queue.getJobLogs, str(job.id), 0,
                                                                           LOG_LINES - 1))
            record = messages.get(self._ref(job) or "")
            opts = job.opts or {}
            delay = int(opts.get("delay") or 0)
            out.append({
                "id": str(job.id), "name": job.name, "state": state, "data": _job_data_view(job.data),
                "opts": {k: opts[k] for k in JOB_OPTS_SHOWN if k in opts},
                "attemptsMade": job.attemptsMade, "attempts": int(opts.get("attempts") or 1),
                "timestamp": job.timestamp, "processedOn": job.processedOn or None,
                "finishedOn": job.finishedOn or None,
                "delayUntil": (job.timestamp + delay) if state == "delayed" and delay else None,
                "failedReason": job.failedReason or None, "stacktrace": list(job.stacktrace or []),
                "log": [str(line) for line in (logs or {}).get("logs", [])],
                "message": None if record is None else _job_message(record),
            })
        return {"queue": name, "state": state, "total": total, "start": start, "jobs": out}

    def _ref(self, job: Any) -> str | None:
        try:
            return parse_job_data(job.id, job.data or {}).message_id
        except ValueError:
            return None

    async def _messages(self, name: str, jobs: list[Any]) -> dict[str, store.MessageRecord]:
        """The messages these send jobs carry, by message id (none for other queues)."""
        refs = {ref for ref in map(self._ref, jobs) if ref is not None}
        if name not in SEND_QUEUES or not refs:
            return {}
        rows = await self.ctx.db.fetch(SQL.messages_by_ids, list(refs))
        return {r["message_id"]: store.MessageRecord.from_row(r) for r in rows}

    # --- actions ----------------------------------------------------------------------------

    async def promote(self, name: str, job_id: str, by: str) -> Promoted:
        """Move a delayed job to waiting now."""
        queue = self._queue(name)
        state = await self._redis(f"state of {job_id}", lambda: queue.getJobState(job_id))
        if state in (None, "unknown"):
            raise NotFound(f"no job {job_id!r} in {name}")
        if state != "delayed":
            raise Conflict(f"job {job_id!r} is {state}, not delayed: only delayed jobs can be promoted")
        moved = await self._redis(f"promote {job_id}", lambda: promote(queue.backend, [job_id]))
        if not moved:
            raise Conflict(f"job {job_id!r} could not be promoted (it moved meanwhile)")
        await self.ctx.events.record("dashboard.queue.promote", {"queue": name, "jobId": job_id, "by": by})
        return {"queue": name, "jobId": job_id, "promoted": True}

    async def retry(self, name: str, job_id: str, by: str) -> Retried:
        """Retry one failed job (re-queueing its message first for send queues)."""
        queue = self._queue(name)
        job = await self._failed_job(queue, name, job_id)
        requeued = await self._prepare_send(name, job, by=by)
        await self._redis(f"retry {job_id}", _retry_call(job))
        await self.ctx.events.record("dashboard.queue.retry", {"queue": name, "jobId": job_id, "by": by,
                                                               "messageRequeued": requeued})
        return {"queue": name, "jobId": job_id, "retried": True, "messageRequeued": requeued}

    async def retry_all_failed(self, name: str, by: str, filters: JobFilter | None = None) -> BulkRetried:
        """Retry every failed job (up to ``BULK_LIMIT``; only those the filters keep); a job that cannot
        be retried is skipped, with why."""
        queue = self._queue(name)
        jobs = await self._redis(f"failed jobs of {name}", lambda: queue.getJobs(["failed"], 0, BULK_LIMIT - 1))
        if filters is not None and filters.any:
            messages = await self._messages(name, jobs)
            jobs = [j for j in jobs if filters.keeps(j, messages.get(self._ref(j) or ""))]
        result = BulkResult()
        for job in jobs:
            try:
                await self._prepare_send(name, job, by=by)
                await self._redis(f"retry {job.id}", _retry_call(job))
                result.done += 1
            except QueueUnavailable:
                raise
            except BisnesgptError as exc:
                result.skipped.append({"jobId": str(job.id), "reason": exc.detail})
            except Exception as exc:  # bullmq raises plain Exceptions (job locked, moved meanwhile)
                result.skipped.append({"jobId": str(job.id), "reason": str(exc) or type(exc).__name__})
        result.remaining = int(await self._redis(f"counts of {name}", lambda: queue.getJobCountByTypes("failed")))
        answer = result.answer(name)
        await self.ctx.events.record("dashboard.queue.retry_all", {**answer, "by": by}, "warning")
        return answer

    async def remove(self, name: str, job_id: str, by: str) -> JobRemoved:
        """Remove a job in any state but ``active`` (a worker holds it then)."""
        queue = self._queue(name)
        state = await self._redis(f"state of {job_id}", lambda: queue.getJobState(job_id))
        if state in (None, "unknown"):
            raise NotFound(f"no job {job_id!r} in {name}")
        if state == "active":
            raise Conflict(f"job {job_id!r} is being processed right now; wait for it to finish or fail")
        removed = await self._redis(f"remove {job_id}", lambda: queue.remove(job_id))
        if not removed:
            raise Conflict(f"job {job_id!r} could not be removed (locked or moved meanwhile)")
        await self.ctx.events.record("dashboard.queue.remove", {"queue": name, "jobId": job_id, "state": state,
                                                                "by": by}, "warning")
        return {"queue": name, "jobId": job_id, "removed": True, "state": state}

    async def pause(self, name: str, by: str) -> Paused:
        """Pause the queue for every worker (BullMQ's own flag); running jobs finish."""
        queue = self._queue(name)
        await self._redis(f"pause {name}", queue.pause)
        await self.ctx.events.record("dashboard.queue.pause", {"queue": name, "by": by}, "warning")
        return {"queue": name, "paused": True}

    async def resume(self, name: str, by: str) -> Paused:
        """Resume a paused queue."""
        queue = self._queue(name)
        await self._redis(f"resume {name}", queue.resume)
        await self.ctx.events.record("dashboard.queue.resume", {"queue": name, "by": by})
        return {"queue": name, "paused": False}

    async def clean_completed(self, name: str, by: str) -> Cleaned:
        """Remove the queue's completed jobs, ``BULK_LIMIT`` at a time."""
        queue = self._queue(name)
        removed = 0
        for _ in range(100):
            batch = await self._redis(f"clean {name}", lambda: queue.clean(0, BULK_LIMIT, "completed"))
            removed += len(batch or [])
            if len(batch or []) < BULK_LIMIT:
                break
        await self.ctx.events.record("dashboard.queue.clean", {"queue": name, "removed": removed, "by": by})
        return {"queue": name, "removed": removed}

    # --- helpers ----------------------------------------------------------------------------

    async def _failed_job(self, queue: Any, name: str, job_id: str) -> Any:
        from bullmq import Job

        job = await self._redis(f"job {job_id}", lambda: Job.fromId(queue, job_id))
        if job is None:
            raise NotFound(f"no job {job_id!r} in {name}")
        state = await self._redis(f"state of {job_id}", lambda: queue.getJobState(job_id))
        if state != "failed":
            raise Conflict(f"job {job_id!r} is {state}, not failed: only failed jobs can be retried")
        return job

    async def _prepare_send(self, name: str, job: Any, *, by: str) -> bool:
        """For a send job: re-queue its failed message; refuse if it went out already."""
        if name not in SEND_QUEUES:
            return False
        try:
            ref = parse_job_data(job.id, job.data or {})
        except ValueError:
            return False  # not a send job the workers understand; retrying it fails it again, visibly
        async with self.ctx.db.transaction() as conn:
            record = await store.load_message(conn, ref.message_id, ref.company_id)
            if record is None:
                return False  # an original Node job not yet recorded: the worker records it
            if record.status == "failed":
                outcome = await requeue_failed(conn, record.id, by=by, queue=name)
                return outcome.requeued
            if record.status in PAST_SENDING:
                raise Conflict(f"message {record.message_id} is already {record.status}: retrying its job would "
                               "not send it again (remove the job instead)")
        return False


def _entry_ms(entry_id: object) -> int:
    """The time (epoch ms) of a Redis stream entry id ``<ms>-<seq>``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.split("-")[0])


def _job_message(record: store.MessageRecord) -> JobMessage:
    return {"messageId": record.message_id, "companyId": record.company_id, "phoneIndex": record.phone_index,
            "status": record.status, "errorCode": record.error_code, "errorTitle": record.error_title,
            "chatId": record.chat_id}


def _job_data_view(data: object) -> JsonObject:
    """What a job list shows of the job's data (message ids, not message bodies)."""
    if not isinstance(data, dict):
        return {}
    view: JsonObject = {k: data[k] for k in JOB_DATA_SHOWN if k in data}
    if isinstance(data.get("messageData"), dict):
        view["nodeFormat"] = True
    return view


def _retry_call(job: Any) -> Callable[[], Awaitable[None]]:
    """Move a failed job back to waiting with a fresh attempts budget (an operator's retry)."""
    async def call() -> None:
        data = dict(job.data or {})
        if data.pop(DELAYED_RETRIES_KEY, None) is not None:  # the helper's count of provider-delayed retries
            await job.updateData(data)
        await job.retry("failed", {"resetAttemptsMade": True, "resetAttemptsStarted": True})

    return call
