"""Interop: a job added by the Node BullMQ library (the original server's format) is picked
up by the shared worker helper, recorded in ``messages`` and sent; Node job ids, unique
only within their queue, never make a job vanish.

Runs when ``node`` is on PATH (``.ci/run`` installs tests/node's locked packages).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import store
from bisnesgpt.messaging.queues import META, WWEBJS
from tests.support.pipeline import RecordingEngine, Workers
from tests.support.polling import eventually

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(NODE is None, reason="node is not on PATH (the Node BullMQ interop test needs it)")]


@pytest.fixture(scope="module")
def node_packages() -> Path:
    if not (NODE_DIR / "node_modules" / "bullmq").exists():
        npm = shutil.which("npm")
        assert npm is not None, "node without npm: cannot install tests/node's packages"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True,
                       timeout=300)
    return NODE_DIR


async def node_add(redis_url: str, queue: str, job_id: str, data: dict[str, object] | list[dict[str, object]]) -> str:
    """Add Node-format jobs with Node BullMQ (``job_id`` "-": BullMQ numbers them); the ids, one a line."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, "add-job.mjs", redis_url, queue, job_id, json.dumps(data), cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def add_company(db: Database, company_id: str = "acme") -> None:
    """A company with a WhatsApp-Web phone 0 and a Cloud API phone 1."""
    await db.execute("INSERT INTO companies (id, name) VALUES ($1, $1)", company_id)
    await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                     "VALUES ($1, 0, 'wwebjs'), ($1, 1, 'meta_direct')", company_id)


async def node_message(db: Database, queue: str, job_id: str) -> store.MessageRecord | None:
    """The message the queue's job ``job_id`` became."""
    row = await db.fetchrow("SELECT * FROM messages WHERE queue_name = $1 AND external_ref = $2", queue, job_id)
    return None if row is None else store.MessageRecord.from_row(row)


async def job_gone(redis_url: str, queue: str, job_id: str) -> bool:
    """Whether the queue has no job ``job_id`` (completed jobs are removed)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return not await client.exists(f"bull:{queue}:{job_id}")
    finally:
        await client.aclose()


async def failed_reason(redis_url: str, queue: str, job_id: str) -> str | None:
    """The failed job's reason (None while it is not failed)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        if await client.zscore(f"bull:{queue}:failed", job_id) is None:
            return None
        reason = await client.hget(f"bull:{queue}:{job_id}", "failedReason")
        return str(reason)
    finally:
        await client.aclose()


async def test_a_node_bullmq_job_is_recorded_and_sent(db: Database, redis_url: str, node_packages: Path) -> None:
    await add_company(db)
    engine = RecordingEngine()
    text_id, image_id = f"node-{uuid.uuid4().hex}", f"node-{uuid.uuid4().hex}"
    async with Workers(db, redis_url, engine, (WWEBJS, META)):
        assert await node_add(redis_url, WWEBJS.name, text_id, {
            "companyId": "acme", "phoneIndex": 0,
            "messageData": {"to": "60123456789@c.us", "message": "hello from the Node server"}}) == text_id
        assert await node_add(redis_url, META.name, image_id, {
            "companyId": "acme", "phoneIndex": 1,
            "messageData": {"to": "60198765432", "type": "image", "mediaUrl": "https://example.com/a.jpg",
                            "message": "caption"}}) == image_id

        async def both_sent() -> bool:
            rows = await db.fetch("SELECT status FROM messages WHERE external_ref = ANY($1::text[])",
                                  [text_id, image_id])
            return [r["status"] for r in rows] == ["sent", "sent"]

        await eventually(both_sent, timeout=30, what="Node jobs recorded and sent")
    text = await node_message(db, WWEBJS.name, text_id)
    image = await node_message(db, META.name, image_id)
    assert text is not None and image is not None
    assert (text.source, text.chat_id, text.content, text.queue_name) == (
        "node-job", "60123456789@c.us", "hello from the Node server", WWEBJS.name)
    assert text.raw is not None and text.raw["messageData"]["message"] == "hello from the Node server"
    assert text.external_id == f"ext-{text.message_id}"
    assert (image.message_type, image.media_url, image.phone_index, image.queue_name) == (
        "image", "https://example.com/a.jpg", 1, META.name)
    assert sorted(engine.sent) == sorted([text.message_id, image.message_id])
    history = await db.fetch("SELECT h.to_status FROM message_status_history h JOIN messages m ON m.id = h.message_pk "
                             "WHERE m.id = $1 ORDER BY h.id", text.id)
    assert [h["to_status"] for h in history] == ["queued", "sending", "sent"]


async def test_node_jobs_with_the_same_ids_in_both_queues_each_become_their_own_message(
        db: Database, redis_url: str, node_packages: Path) -> None:
    """The original server's case: BullMQ numbers each queue's jobs 1, 2, 3 …; four jobs on
    meta-messages, then six on wwebjs-messages (ids 1-4 used twice): ten messages, ten sends."""
    await add_company(db)
    engine = RecordingEngine()
    async with Workers(db, redis_url, engine, (WWEBJS, META)):
        meta_ids = (await node_add(redis_url, META.name, "-", [
            {"companyId": "acme", "phoneIndex": 1, "messageData": {"to": "60111111111", "message": f"meta {n}"}}
            for n in range(4)])).split()
        web_ids = (await node_add(redis_url, WWEBJS.name, "-", [
            {"companyId": "acme", "phoneIndex": 0, "messageData": {"to": "60122222222", "message": f"web {n}"}}
            for n in range(6)])).split()
        assert set(meta_ids) < set(web_ids)  # the overlap that used to make four jobs vanish

        async def all_sent() -> bool:
            row = await db.fetchrow("SELECT count(*) FILTER (WHERE status = 'sent') AS sent FROM messages")
            return row is not None and row["sent"] == 10

        await eventually(all_sent, timeout=60, what="ten Node jobs recorded and sent")
    rows = await db.fetch("SELECT message_id, queue_name, external_ref, content FROM messages ORDER BY id")
    assert sorted((r["queue_name"], r["external_ref"], r["content"]) for r in rows) == sorted(
        [(META.name, job_id, f"meta {n}") for n, job_id in enumerate(meta_ids)]
        + [(WWEBJS.name, job_id, f"web {n}") for n, job_id in enumerate(web_ids)])
    assert len({r["message_id"] for r in rows}) == 10
    assert sorted(engine.sent) == sorted(r["message_id"] for r in rows)


async def test_a_job_run_again_finds_its_own_message_and_a_reused_id_fails_visibly(
        db: Database, redis_url: str, node_packages: Path) -> None:
    await add_company(db)
    engine = RecordingEngine()
    job: dict[str, object] = {"companyId": "acme", "phoneIndex": 0,
                              "messageData": {"to": "60123456789", "message": "your invoice"}}
    async with Workers(db, redis_url, engine, (WWEBJS,)):
        await node_add(redis_url, WWEBJS.name, "order-17", job)

        async def first_sent() -> bool:
            message = await node_message(db, WWEBJS.name, "order-17")
            return message is not None and message.status == "sent"

        await eventually(first_sent, timeout=30, what="the first job sent")
        # The same job again (a producer's retry; completed jobs are removed, so BullMQ takes
        # the id again): it finds its own message, already sent, and sends nothing.
        await node_add(redis_url, WWEBJS.name, "order-17", job)
        await eventually(lambda: job_gone(redis_url, WWEBJS.name, "order-17"), timeout=30,
                         what="the job run again completed (and was removed)")
        # The same id for something else: refused, visibly.
        await node_add(redis_url, WWEBJS.name, "order-17", {
            **job, "messageData": {"to": "60123456789", "message": "a different text"}})
        reason = await eventually(lambda: failed_reason(redis_url, WWEBJS.name, "order-17"), timeout=30,
                                  what="the reused job id failed")
    assert reason is not None and reason.startswith("JOB_ID_COLLISION: job id order-17 of wwebjs-messages already "
                                                    "belongs to message")
    assert len(engine.sent) == 1
    assert await db.fetchval("SELECT count(*) FROM messages") == 1
    event = await db.fetchrow("SELECT event_type, severity, event_data FROM process_events "
                              "WHERE event_type = 'send_job.refused'")
    assert event is not None and event["severity"] == "error"
    assert (event["event_data"]["code"], event["event_data"]["job_id"]) == ("JOB_ID_COLLISION", "order-17")
    assert REGISTRY.get_sample_value("bisnesgpt_send_jobs_refused_total",
                                     {"queue": WWEBJS.name, "code": "JOB_ID_COLLISION"}) is not None


async def test_a_job_for_an_unknown_company_or_phone_fails_on_its_first_attempt(
        db: Database, redis_url: str, node_packages: Path) -> None:
    await add_company(db)
    engine = RecordingEngine()
    async with Workers(db, redis_url, engine, (META,)):
        await node_add(redis_url, META.name, "no-company", {
            "companyId": "nosuch", "phoneIndex": 1, "messageData": {"to": "60123456789", "message": "x"}})
        await node_add(redis_url, META.name, "no-phone", {
            "companyId": "acme", "phoneIndex": 7, "messageData": {"to": "60123456789", "message": "x"}})
        company = await eventually(lambda: failed_reason(redis_url, META.name, "no-company"), timeout=30,
                                   what="the unknown company's job failed")
        phone = await eventually(lambda: failed_reason(redis_url, META.name, "no-phone"), timeout=30,
                                 what="the unknown phone's job failed")
    assert company is not None and company.startswith("COMPANY_NOT_FOUND: company 'nosuch' does not exist")
    assert phone is not None and phone.startswith("PHONE_NOT_FOUND: company 'acme' has no phone 7")
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:  # on the first attempt: no retries with backoff first
        for job_id in ("no-company", "no-phone"):  # bullmq names the count atm (attemptsMade before 5)
            assert [n for n in await client.hmget(f"bull:{META.name}:{job_id}", "atm", "attemptsMade") if n] == ["1"]
    finally:
        await client.aclose()
    assert engine.sent == []
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
