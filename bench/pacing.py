"""Pacing accuracy, Meta path: how close to a phone's configured rate the engine sends.

One Cloud API phone at 80 msg/s (Meta's default tier), 1000 messages to 200 recipients
queued at once, the meta role running alone against the Cloud API emulator (its own
throughput limit at 80/s too, so sending faster would show as error 130429). The figure is
the achieved rate beyond the pacer's burst allowance divided by the limit: 1.0 is exactly at
the limit (receipt timestamps add a few per cent of noise on short runs), below 1.0 is the
cost of pacing on this machine. ``tests/e2e/test_meta_send_flow.py`` asserts only the
behaviour (never faster than the limit, no 130429); this is where the speed is measured.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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

from bench.system import Servers, scenario_storage
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.queues import QueueProducer

PHONE_ID = "300000000000001"
TOKEN = "pacing-token"
LIMIT = 80.0
BURST = 8  # META_PACING_BURST_MS 100 at 80/s


async def _measure(database_url: str, redis_url: str, workdir: Path, messages: int) -> dict[str, Any]:
    db = Database(database_url, max_size=4)
    await db.open()
    producer = QueueProducer(redis_url)
    emulator = EmulatorProc(workdir, phones=[f"{PHONE_ID}:{TOKEN}"], name="pacing-emulator")
    meta: MetaProc | None = None
    try:
        await add_meta_phone(db, phone_number_id=PHONE_ID, token=TOKEN, settings={"messages_per_second": LIMIT})
        recipients = [f"6011{i:07d}" for i in range(200)]
        await open_window(db, recipients)
        ids = [await queue_message(db, producer, text_payload(recipients[i % 200], f"m{i}")) for i in range(messages)]
        meta = MetaProc(workdir, meta_env(database_url, redis_url, free_port(), emulator.url))
        await wait_statuses(db, ids, {"sent"}, timeout=max(120.0, messages / 10), what=f"{messages} messages sent")
        record = emulator.requests(operation="send")
        accepted = sorted(float(r["ts"]) for r in record if r["http_status"] == 200)
        # A token bucket at rate r with room for BURST lets at most BURST + r * t through in
        # any t seconds, so (sent - BURST) / t is the rate to hold against the limit.
        span = accepted[-1] - accepted[0]
        rate = (len(accepted) - BURST) / span if span > 0 else None
        return {"limit_per_second": LIMIT, "messages": messages, "accepted": len(accepted), "burst": BURST,
                "span_seconds": round(span, 2), "achieved_rate": round(rate, 2) if rate else None,
                "ratio_to_limit": round(rate / LIMIT, 3) if rate else None,
                "throughput_errors_130429": sum(1 for r in record if r.get("error_code") == 130429)}
    finally:
        if meta is not None:
            meta.close()
        emulator.close()
        await producer.close()
        await db.close()


def run(servers: Servers, workdir: Path, *, messages: int, log: Any) -> dict[str, Any]:
    """The pacing figure (see the module docstring)."""
    log(f"pacing: {messages} messages at {LIMIT:.0f}/s on one Cloud API phone")
    (workdir / "pacing").mkdir(exist_ok=True)
    with scenario_storage(servers) as (database_url, redis_url):
        return asyncio.run(_measure(database_url, redis_url, workdir / "pacing", messages))
