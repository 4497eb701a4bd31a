"""Sending through a running ``bisnesgpt run meta`` and a running emulator (both spawned).

Messages are inserted and enqueued the way the API does it (tests/support/meta.py); the
emulator's request record is the witness of what reached "Meta" and when.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.queues import QueueProducer
from tests.support.meta import (
    EmulatorProc,
    MetaProc,
    add_meta_phone,
    meta_env,
    open_window,
    queue_message,
    text_payload,
    wait_statuses,
)
from tests.support.procs import free_port

pytestmark = pytest.mark.e2e

PHONE_ID = "300000000000001"
TOKEN = "flow-token"


@dataclass
class Stack:
    db: Database
    producer: QueueProducer
    emulator: EmulatorProc
    meta: MetaProc | None
    workdir: Path
    env: dict[str, str]

    def start_meta(self) -> MetaProc:
        self.meta = MetaProc(self.workdir, self.env)
        return self.meta


@pytest.fixture
async def stack(db: Database, database_url: str, redis_url: str, tmp_path: Path,
                request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    marker = request.node.get_closest_marker("emulator")
    options = dict(marker.kwargs) if marker else {}
    meta_port = free_port()
    webhook = f"http://127.0.0.1:{meta_port}/webhook/meta" if options.pop("webhooks", False) else None
    emulator = EmulatorProc(tmp_path, webhook_url=webhook, phones=[f"{PHONE_ID}:{TOKEN}"],
                            extra=options.pop("extra", []))
    producer = QueueProducer(redis_url)
    env = meta_env(database_url, redis_url, meta_port, emulator.url)
    the_stack = Stack(db, producer, emulator, None, tmp_path, env)
    try:
        yield the_stack
    finally:
        if the_stack.meta is not None:
            the_stack.meta.close()
        emulator.close()
        await producer.close()


def sends(emulator: EmulatorProc) -> list[dict]:  # type: ignore[type-arg]
    return emulator.requests(operation="send")


@pytest.mark.timeout(240)
async def test_thousand_messages_at_80_per_second(stack: Stack) -> None:
    await add_meta_phone(stack.db, phone_number_id=PHONE_ID, token=TOKEN, settings={"messages_per_second": 80})
    recipients = [f"6011{i:07d}" for i in range(200)]
    await open_window(stack.db, recipients)
    ids = [await queue_message(stack.db, stack.producer, text_payload(recipients[i % 200], f"m{i}"))
           for i in range(1000)]
    stack.start_meta()
    await wait_statuses(stack.db, ids, {"sent"}, timeout=120, what="1000 messages sent")
    record = sends(stack.emulator)
    codes = [r.get("error_code") for r in record]
    assert codes.count(130429) == 0, f"throughput errors: {codes.count(130429)}"
    accepted = sorted(r["ts"] for r in record if r["http_status"] == 200)
    assert len(accepted) == 1000  # no duplicates, nothing lost
    rate = (len(accepted) - 1) / (accepted[-1] - accepted[0])
    per_second = [0] * (int(accepted[-1] - accepted[0]) + 1)
    for ts in accepted:
        per_second[int(ts - accepted[0])] += 1
    span = accepted[-1] - accepted[0]
    print(f"\n1000 messages: achieved {rate:.2f} msg/s over {span:.2f} s; sends per second {per_second}")
    assert 76.0 <= rate <= 84.0
