"""Anchors: raw BullMQ no-op processing (Python, and Node when present) on the same Redis.

The end-to-end figures are reported as ratios to these: what a queue with a do-nothing
worker achieves on this machine in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"


@dataclass
class QueueRun:
    jobs: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


@contextlib.asynccontextmanager
async def running_worker(redis_url: str, prefix: str, process: Any, *, concurrency: int,
                         worker_cls: Any = None) -> AsyncIterator[tuple[Any, Any]]:
    """A fresh queue and a running bullmq worker on it (``worker_cls``, default bullmq's own),
    delays not rounded to seconds (pitfall 2); closed and the queue obliterated afterwards."""
    from bullmq import Queue, Worker

    from bisnesgpt.infra.redis import connection_kwargs

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, {"connection": connection_kwargs(redis_url)})
    worker = (worker_cls or Worker)(name, process, {"connection": connection_kwargs(redis_url),
                                                    "concurrency": concurrency, "autorun": False,
                                                    "removeOnComplete": True})
    await worker.backend.blocking_connection.getRedisVersion()
    runner = asyncio.create_task(worker.run())
    try:
        yield queue, worker
    finally:
        await worker.close()
        runner.cancel()
        await queue.obliterate(force=True)
        await queue.close()


async def python_noop(redis_url: str, jobs: int, concurrency: int = 10) -> QueueRun:
    """Add ``jobs`` jobs, process them with a no-op bullmq worker; throughput and latency."""
    done = asyncio.Event()
    latencies: list[float] = []

    async def process(job: Any, _token: str) -> None:
        latencies.append(time.time() * 1000 - float(job.data["t"]))
        if len(latencies) >= jobs:
            done.set()

    async with running_worker(redis_url, "bench-noop", process, concurrency=concurrency) as (queue, _worker):
        start = time.perf_counter()
        batch = 500
        for offset in range(0, jobs, batch):
            await queue.addBulk([{"name": "noop", "data": {"t": time.time() * 1000},
                                  "opts": {"removeOnComplete": True}} for _ in range(min(batch, jobs - offset))])
        await asyncio.wait_for(done.wait(), 300)
        seconds = time.perf_counter() - start
    return QueueRun(jobs, seconds, latencies)


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def node_noop(redis_url: str, jobs: int, concurrency: int = 10) -> QueueRun | None:
    """The same measurement with Node BullMQ (bench/node), or None without node."""
    if not node_available():
        return None
    if not (NODE_DIR / "node_modules" / "bullmq").exists():
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    out = subprocess.run(["node", "noop.js", redis_url, str(jobs), str(concurrency)], cwd=NODE_DIR,
                         capture_output=True, text=True, check=True, timeout=600)
    data = json.loads(out.stdout)
    return QueueRun(data["jobs"], data["seconds"], data["latencies_ms"])


@dataclass
class FetchCost:
    loop: str
    jobs: int
    fetches: int
    cpu_seconds: float
    seconds: float

    @property
    def fetches_per_job(self) -> float:
        return self.fetches / self.jobs if self.jobs else 0.0

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


async def fetch_cost(redis_url: str, *, ours: bool, rate: float, seconds: float, concurrency: int) -> FetchCost:
    """A no-op worker with ``concurrency`` slots fed ``rate`` jobs/s: ``moveToActive`` calls and CPU.

    ``ours`` picks the product's worker (sequential fetches) instead of bullmq's stock run
    loop; producer and worker share this process, so the CPU difference is the loop's.
    """
    from bisnesgpt.infra.bullmq_worker import HandBackWorker

    processed: list[str] = []
    all_done = asyncio.Event()
    jobs = int(rate * seconds)

    async def process(job: Any, _token: str) -> None:
        processed.append(job.id)
        if len(processed) >= jobs:
            all_done.set()

    async with running_worker(redis_url, "bench-fetch", process, concurrency=concurrency,
                              worker_cls=HandBackWorker if ours else None) as (queue, worker):
        fetches = 0
        move_to_active = worker.moveToActive

        async def counted(token: str) -> Any:
            nonlocal fetches
            fetches += 1
            return await move_to_active(token)

        worker.moveToActive = counted
        await asyncio.sleep(1.0)  # settle into the idle blocking wait
        fetches = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for n in range(jobs):
            await asyncio.sleep(max(0.0, t0 + n / rate - time.perf_counter()))
            await queue.add("noop", {}, {"removeOnComplete": True})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done.wait(), 30)
        return FetchCost("product (sequential)" if ours else "bullmq 3.4.4 stock", len(processed), fetches,
                         time.process_time() - cpu0, time.perf_counter() - t0)
