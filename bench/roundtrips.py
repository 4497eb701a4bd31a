"""PostgreSQL statements per accepted message: a count, the same on every machine.

``python -m bench.roundtrips`` accepts ``--messages`` text messages through the product's
``SendService`` (a cached route, as after the first send; with and without an
Idempotency-Key; a WhatsApp-Web phone and a Cloud API phone, whose 24-hour window is checked
at accept) on a pool of one connection whose every statement asyncpg's query logger counts
(BEGIN and COMMIT included), and prints statements per message for each kind. The engine side too: the Cloud API
messages then go through the product's ``SendJobProcessor`` and ``PgSendStore`` (all at once, as a
busy worker's jobs do; the provider call itself stubbed: the Graph request is not a database
statement), counting statements per delivered message and transactions (commits) per message;
and Redis round trips per send of the meta engine's pacing (``MetaEngine``'s own pacing steps
on a real ``Pacer``). Run it against another checkout with ``PYTHONPATH=<checkout>/src`` to
compare builds. Uses
``BENCH_DATABASE_URL`` / ``TEST_DATABASE_URL`` and ``BENCH_REDIS_URL`` / ``TEST_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.support.polling import eventually

from bench.roundtrips_engine import engine_counts
from bench.system import open_servers, scenario_storage
from bisnesgpt.config import load_settings
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.addressing import Recipient
from bisnesgpt.messaging.drafts import Draft
from bisnesgpt.messaging.idempotency import IdempotencyKey, fingerprint
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.messaging.router import MessageRouter
from bisnesgpt.messaging.sending import SendRequest, SendService
from bisnesgpt.messaging.store import touch_inbound_session


async def measure(url: str, redis_url: str, messages: int) -> dict[str, float]:
    db = Database(url, max_size=1, min_size=1)
    await db.open()
    queries: list[str] = []
    async with db.connection() as conn:
        conn.add_query_logger(lambda record: queries.append(record.query))
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme')")
        await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                           "VALUES ('acme', 0, 'wwebjs'), ('acme', 1, 'meta_direct')")
        for n in range(messages):
            await touch_inbound_session(conn, "acme", 1, f"6010{n:07d}", datetime.now(UTC))
    coordinator = Coordinator(redis_url, namespace=f"rt-{uuid.uuid4().hex[:8]}", process_name="api", role="api",
                              host="bench", peers={}, on_shutdown=lambda _reason: None)
    router = MessageRouter(db, load_settings(), coordinator, ttl_seconds=300)
    coordinator.start()
    await eventually(lambda: router.listening, timeout=30, what="router listening")  # it caches only then
    producer = QueueProducer(redis_url)
    service = SendService(db, router, producer)
    out: dict[str, float] = {}
    try:
        for phone in (0, 1):
            await router.route("acme", phone)
            for keyed in (False, True):
                queries.clear()
                for n in range(messages):
                    chat = f"6010{n:07d}@c.us"
                    body = f"m{phone}{keyed}{n}"
                    key = IdempotencyKey("acme", f"k-{body}", fingerprint("POST", "/p", {"message": body}),
                                         "POST", "/p") if keyed else None
                    draft = Draft("text", {"body": body}, Recipient(chat, chat.partition("@")[0], False),
                                  content=body, request={"message": body})
                    outcome = await service.send(SendRequest("acme", phone, draft, idempotency=key))
                    assert outcome.status_code == 202, outcome
                kind = f"{'meta' if phone else 'wwebjs'}{' + Idempotency-Key' if keyed else ''}"
                out[kind] = round(len(queries) / messages, 2)
        out.update(await engine_counts(db, producer, queries, redis_url))
    finally:
        await producer.close()
        await coordinator.stop()
        await db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrips", description=__doc__)
    parser.add_argument("--messages", type=int, default=50, help="messages of each kind")
    args = parser.parse_args()
    servers = open_servers(Path(tempfile.mkdtemp(prefix="bisnesgpt-rt-")))
    try:
        with scenario_storage(servers) as (database_url, redis_url):
            counts = asyncio.run(measure(database_url, redis_url, args.messages))
    finally:
        servers.close()
    print(json.dumps({"statements_per_message": counts}, indent=1))


if __name__ == "__main__":
    main()
