"""The engine side of ``bench.roundtrips``: statements per delivered meta message, Redis calls per send.

``engine_counts`` takes the Cloud API messages ``bench.roundtrips`` accepted (still ``queued``)
through the product's ``SendJobProcessor`` and ``PgSendStore`` — with the meta engine's
``WriteBatcher`` where the checkout has one — all at once, the provider call stubbed, counting
every statement on the one pooled connection; then counts the Redis commands the meta engine's
pacing sends per message (``MetaEngine._pace``, ``_through_the_gate`` and what follows a send
that got through) on a real ``Pacer``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from bisnesgpt.config import load_settings
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.engine import MetaEngine
from bisnesgpt.engines.meta.pacing import Pacer
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.node_jobs import send_job_data
from bisnesgpt.messaging.queues import META, QueueProducer
from bisnesgpt.messaging.send_processor import SendJobProcessor, SendReceipt
from bisnesgpt.messaging.send_store import PgSendStore
from bisnesgpt.messaging.store import MessageRecord

try:  # a checkout from before the group commit has none
    from bisnesgpt.messaging.write_batch import WriteBatcher
except ImportError:  # pragma: no cover - only on older checkouts
    WriteBatcher = None  # type: ignore[assignment,misc]


class _Provider:
    """The Graph request stubbed (it is no database statement); everything else is the product's."""

    provider = "meta"

    async def before_send(self, message: MessageRecord) -> None:
        """Nothing to refuse or pace here (pacing is counted on its own)."""

    async def send(self, message: MessageRecord) -> SendReceipt:
        """A wamid, as Graph answers."""
        return SendReceipt(f"wamid.{message.message_id}", {"profile": "bench"})


@dataclass
class _Job:
    """The bullmq ``Job`` members the processor reads (none of its moves happen here)."""

    id: str
    data: JsonObject
    opts: JsonObject = field(default_factory=dict)
    attemptsMade: int = 0

    async def moveToDelayed(self, timestamp: int, token: str) -> None:
        """Not expected: every message may go."""
        raise AssertionError(f"job {self.id} deferred")

    async def updateData(self, data: JsonObject) -> None:
        """Not expected."""
        raise AssertionError("updateData")

    async def promote(self) -> None:
        """Not expected."""
        raise AssertionError("promote")


async def engine_counts(db: Database, producer: QueueProducer, queries: list[str], redis_url: str) -> dict[str, float]:
    """Statements and commits per delivered meta message, and Redis calls per paced send."""
    rows = await db.fetch("SELECT message_id, company_id, phone_index, chat_id FROM messages "
                          "WHERE provider = 'meta' AND status = 'queued' ORDER BY id")
    waves: list[list[Any]] = []  # a chat's messages go one after the other (per-chat order), chats at once
    seen: dict[str, int] = {}
    for row in rows:
        wave = seen.get(row["chat_id"], 0)
        seen[row["chat_id"]] = wave + 1
        if wave == len(waves):
            waves.append([])
        waves[wave].append(row)
    settings = load_settings()
    batcher = (WriteBatcher(db, max_items=settings.meta_write_batch_max, max_delay_ms=settings.meta_write_batch_ms)
               if WriteBatcher is not None else None)
    store = PgSendStore(db, producer, batcher=batcher) if batcher is not None else PgSendStore(db, producer)
    processor = SendJobProcessor(store, _Provider(), META, process_name="meta")
    queries.clear()
    for wave_rows in waves:
        outcomes = await asyncio.gather(*(processor.process(_Job(r["message_id"], dict(send_job_data(SimpleNamespace(
            message_id=r["message_id"], company_id=r["company_id"], phone_index=r["phone_index"])))), "token")
            for r in wave_rows))
        assert all(o.kind == "sent" for o in outcomes), outcomes
    delivered = len(rows)
    commits = sum(1 for q in queries if q.strip().upper().startswith("COMMIT"))
    return {"meta engine: statements per delivered message": round(len(queries) / delivered, 2),
            "meta engine: commits per delivered message": round(commits / delivered, 2),
            "meta engine: Redis calls per paced send": await _pacing_calls(redis_url, 20)}


async def _pacing_calls(redis_url: str, sends: int) -> float:
    client = redis_client(redis_url)
    engine: Any = MetaEngine(load_settings(), None, None, Pacer(client), None, None, None)  # type: ignore[arg-type]
    phone = SimpleNamespace(settings={"messages_per_second": 100_000, "pair_interval_ms": 0})
    company = f"rt-{uuid.uuid4().hex[:8]}"
    sent: list[object] = []
    real = client.execute_command

    async def counted(*args: object, **options: object) -> object:
        sent.append(args[0])
        return await real(*args, **options)

    try:
        for n in range(sends + 1):
            if n == 1:  # the first loaded the scripts
                client.execute_command = counted  # type: ignore[method-assign]
            message = SimpleNamespace(company_id=company, phone_index=0, contact=f"60{n}", message_id=f"m{n}")
            await engine._pace(message, phone)
            await engine._through_the_gate(message, phone)
            through = getattr(engine, "_through_to", None)  # what follows a send that got through
            if through is not None:
                await through(message)
            else:
                await engine.pacer.clear_recipient_backoff(company, 0, message.contact)
    finally:
        await client.aclose()
    return round(len(sent) / sends, 2)
