"""Every Redis use behind Sentinel, across a real failover (master kill -9, replica promoted).

The deployment (tests.support.sentinel) is five real servers: master, replica, three
sentinels. What must hold for the product's three kinds of Redis client:

* commands (``redis_client``): after the failover they reach the new master;
* BullMQ (``QueueProducer`` / ``QueueWorker`` built from ``connection_kwargs``): jobs added
  after the failover are all processed, and processing resumes within 10 s of the kill;
* pub/sub (the ``Coordinator``): it resubscribes on the new master and hears what is
  published there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.coordination.channels import PROCESS_MESSAGE, publish
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.core.service_urls import sentinel_target, sentinel_url
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import QueueProducer, QueueSpec
from tests.support.sentinel import SentinelDeployment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RESUME_BOUND_S = 10.0


@pytest.mark.unit
def test_sentinel_urls_round_trip_and_malformed_ones_are_refused() -> None:
    url = sentinel_url(["10.0.0.1:26379", "[::1]:26380", "s3"], "shop", db=3, password="p@ss",
                       sentinel_password="s:cret")
    target = sentinel_target(url)
    assert target is not None
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380), ("s3", 26379))
    assert (target.master, target.db, target.password, target.sentinel_password) == ("shop", 3, "p@ss", "s:cret")
    assert sentinel_target("redis://127.0.0.1:6379/0") is None
    for bad in ("redis+sentinel:///mymaster", "redis+sentinel://h:1", "redis+sentinel://h:x/m",
                "redis+sentinel://h:1/m/notadb"):
        with pytest.raises(ValueError):
            sentinel_target(bad)


async def test_commands_queues_and_pubsub_follow_the_master_across_a_failover(tmp_path: Path) -> None:
    with SentinelDeployment(tmp_path) as deployment:
        url = deployment.url
        client = redis_client(url, name="test", retry=True)
        producer = QueueProducer(url)
        spec = QueueSpec("sentinel-test", "job", 3, {"type": "fixed", "delay": 100}, 4, "test")
        processed: dict[str, float] = {}

        async def process(job: Any, _token: str) -> None:
            processed[job.id] = time.monotonic()

        worker = QueueWorker(url, spec, process)
        heard: list[dict[str, Any]] = []
        coordinator = Coordinator(url, process_name="test", role="api", host="h", peers={},
                                  on_shutdown=lambda _reason: None, namespace="sentinel-test")

        async def on_message(payload: dict[str, Any]) -> None:
            heard.append(payload)

        coordinator.on(PROCESS_MESSAGE, on_message)
        added: dict[str, float] = {}
        producer_errors: list[str] = []
        stop = asyncio.Event()

        async def produce() -> None:
            n = 0
            while not stop.is_set():
                job_id = f"j{n}"
                try:
                    await producer.add(spec, job_id, {"n": n})
                    added[job_id] = time.monotonic()
                    n += 1
                except Exception as exc:  # an add refused while there is no master is retried with the same id
                    producer_errors.append(repr(exc))
                await asyncio.sleep(0.05)

        await worker.start()
        coordinator.start()
        producing = asyncio.create_task(produce())
        try:
            await client.set("before", "1")
            while len(processed) < 20:
                await asyncio.sleep(0.05)
            killed_at = time.monotonic()
            old = deployment.kill_master()
            failover_s = await asyncio.to_thread(deployment.wait_failover, old)
            failed_over_at = time.monotonic()
            # Commands reach the new master (the retrying client rides out the switch).
            await asyncio.wait_for(client.set("after", "1"), 15)
            assert deployment.master().get("after") == "1"
            # Jobs keep flowing: the first one processed after the kill, within the bound.
            while not any(t > failed_over_at for t in processed.values()):
                assert time.monotonic() - killed_at < RESUME_BOUND_S + 5, (
                    f"processing did not resume: {sum(t > failed_over_at for t in added.values())} added since the "
                    f"failover, worker error {worker.last_error!r}, producer error {producer_errors[-1:]}")
                await asyncio.sleep(0.05)
            resumed_s = min(t for t in processed.values() if t > killed_at) - killed_at
            assert resumed_s <= RESUME_BOUND_S, f"processing resumed {resumed_s:.1f}s after the kill"
            # Pub/sub: the coordinator resubscribed on the new master.
            deadline = time.monotonic() + 15
            while not heard:
                await publish(client, PROCESS_MESSAGE, {"probe": True}, namespace="sentinel-test")
                assert time.monotonic() < deadline, "the coordinator never heard a message on the new master"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            stop.set()
            await producing
            # Every job acknowledged after the failover was processed (before it, an add the
            # old master took but never replicated is the outbox's to restore, not Redis's).
            after = [job_id for job_id, t in added.items() if t > failed_over_at]
            deadline = time.monotonic() + 20
            while not set(after) <= set(processed):
                assert time.monotonic() < deadline, f"{len(set(after) - set(processed))} job(s) never processed"
                await asyncio.sleep(0.1)
            print(f"SENTINEL failover {failover_s:.1f}s, processing resumed {resumed_s:.1f}s after kill -9, "
                  f"{len(after)} jobs after it all processed")
        finally:
            stop.set()
            await producing
            await coordinator.stop()
            await worker.close(timeout=2)
            await producer.close()
            await client.aclose()
