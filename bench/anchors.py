"""Anchors: raw BullMQ no-op processing (Python, and Node when present) on the same Redis.

The end-to-end figures are reported as ratios to these: what a queue with a do-nothing
worker achieves on this machine in the same run.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
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


async def python_noop(redis_url: str, jobs: int, concurrency: int = 10) -> QueueRun:
    """Add ``jobs`` jobs, process them with a no-op bullmq worker; throughput and latency."""
    from bullmq import Queue, Worker

    from bisnesgpt.infra.redis import connection_kwargs

    name = f"bench-noop-{uuid.uuid4().hex[:8]}"
    done = asyncio.Event()
    latencies: list[float] = []
    first: list[float] = []

    async def process(job: Any, _token: str) -> None:
        now = time.time() * 1000
        if not first:
            first.append(time.perf_counter())
        latencies.append(now - float(job.data["t"]))
        if len(latencies) >= jobs:
            done.set()

    queue = Queue(name, {"connection": connection_kwargs(redis_url)})
    worker = Worker(name, process, {"connection": connection_kwargs(redis_url), "concurrency": concurrency,
                                    "autorun": False, "removeOnComplete": True})
    await worker.backend.blocking_connection.getRedisVersion()
    runner = asyncio.create_task(worker.run())
    start = time.perf_counter()
    batch = 500
    for offset in range(0, jobs, batch):
        await queue.addBulk([{"name": "noop", "data": {"t": time.time() * 1000},
                              "opts": {"removeOnComplete": True}} for _ in range(min(batch, jobs - offset))])
    await asyncio.wait_for(done.wait(), 300)
    seconds = time.perf_counter() - start
    await worker.close()
    runner.cancel()
    await queue.obliterate(force=True)
    await queue.close()
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
