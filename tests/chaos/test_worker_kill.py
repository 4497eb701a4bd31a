"""A worker killed with SIGKILL mid-send: its job is back and sent by another within 10 s."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import store
from bisnesgpt.messaging.queues import WWEBJS, QueueProducer
from tests.support.polling import eventually
from tests.support.procs import clean_env

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]


def worker(database_url: str, redis_url: str, *flags: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "tests.support.worker_proc", database_url, redis_url, *flags],
                               cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None and "workers ready" in process.stdout.readline()
    return process


async def test_a_killed_workers_job_is_sent_by_another_within_10_seconds(
        db: Database, database_url: str, redis_url: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme')")
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id="acme", phone_index=0, provider="wwebjs",
            connection_type="wwebjs", chat_id="60123456789@c.us", message_type="text",
            payload={"type": "text", "text": {"body": "SLOW please"}}, queue_name=WWEBJS.name, process_name="wwebjs"))
    assert record is not None
    first = worker(database_url, redis_url, "--hang-on-slow")
    second: subprocess.Popen[str] | None = None
    producer = QueueProducer(redis_url)
    try:
        await producer.add(WWEBJS, record.message_id, {"messageId": record.message_id, "companyId": "acme"})
        assert first.stdout is not None and "hanging on" in first.stdout.readline()
        first.kill()
        first.wait(10)
        killed = time.monotonic()
        second = worker(database_url, redis_url)

        async def sent() -> bool:
            return bool(await db.fetchval("SELECT status = 'sent' FROM messages WHERE id = $1", record.id))

        await eventually(sent, timeout=30, interval=0.1, what="the job sent by the second worker")
        back = time.monotonic() - killed
        print(f"\nkilled worker's job sent by another {back:.2f} s after the kill")
        assert back <= 10.0
        history = await db.fetch("SELECT to_status FROM message_status_history WHERE message_pk = $1 ORDER BY id",
                                 record.id)
        assert [h["to_status"] for h in history] == ["queued", "sending", "sent"]
        assert await db.fetchval("SELECT attempts FROM messages WHERE id = $1", record.id) == 2
    finally:
        await producer.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
