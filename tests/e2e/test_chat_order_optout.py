"""Opting out of per-chat order: ``"ordered": false`` per message, ``phones set --unordered`` per phone.

A running API, no engine: what a send leaves behind is read from the database (its chat
number, NULL when unordered) and from Redis (whether it has a job yet).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from bullmq import Queue

from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queues import WWEBJS
from tests.e2e.test_tenancy_cli import cli
from tests.support.pipeline import ApiServer, seed_tenant
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CHAT = "60123456789"


async def has_job(redis_url: str, message_id: str) -> bool:
    queue = Queue(WWEBJS.name, {"connection": redis_client(redis_url)})
    try:
        return await queue.getJob(message_id) is not None
    finally:
        await queue.close()


async def chat_seq(db: Database, message_id: str) -> int | None:
    value = await db.fetchval("SELECT chat_seq FROM messages WHERE message_id = $1", message_id)
    return None if value is None else int(value)


async def test_messages_opt_out_per_message_and_per_phone(tmp_path: Path, db: Database, database_url: str,
                                                         redis_url: str) -> None:
    tenant = await seed_tenant(db, "acme", {0: "wwebjs"})
    api = await ApiServer(tmp_path / "api", database_url, redis_url).start()
    try:
        async with httpx.AsyncClient(base_url=api.url, headers=tenant.headers, timeout=30) as client:
            async def send(text: str, **extra: object) -> str:
                response = await client.post(f"/api/v2/messages/text/acme/{CHAT}", json={"message": text, **extra})
                assert response.status_code == 202, response.text
                return str(response.json()["messageId"])

            # Ordered by default: the chat's first message has its job, the second waits for it.
            first, second = await send("one"), await send("two")
            assert (await chat_seq(db, first), await chat_seq(db, second)) == (1, 2)
            assert await has_job(redis_url, first) and not await has_job(redis_url, second)
            # "ordered": false: no number, a job at once, whatever is unfinished before it.
            bulk = await send("bulk", ordered=False)
            assert await chat_seq(db, bulk) is None and await has_job(redis_url, bulk)

            # The phone's setting, changed where phone settings are changed.
            changed = cli(tmp_path, database_url, redis_url, "phones", "set", "acme", "0", "--unordered")
            assert changed.returncode == 0, changed.stderr
            assert "unordered" in cli(tmp_path, database_url, redis_url, "phones", "list", "acme").stdout
            config = (await client.get("/api/whatsapp/config/acme")).json()
            assert [row["ordered_sends"] for row in config] == [False]

            async def unordered_now() -> str | None:
                message_id = await send("after the change")
                return message_id if await chat_seq(db, message_id) is None else None

            after = await eventually(unordered_now, timeout=15, what="the phone's sends unordered")
            assert await has_job(redis_url, after)
            # A message's own "ordered": true wins over the phone's setting.
            kept = await send("in order anyway", ordered=True)
            assert await chat_seq(db, kept) == 3 and not await has_job(redis_url, kept)  # behind `second`

            back = cli(tmp_path, database_url, redis_url, "phones", "set", "acme", "0", "--ordered")
            assert back.returncode == 0, back.stderr
            assert [row["ordered_sends"] for row in (await client.get("/api/whatsapp/config/acme")).json()] == [True]
    finally:
        api.stop()
