"""Interop: a job added by the Node BullMQ library (the original server's format) is picked
up by the shared worker helper, recorded in ``messages`` and sent.

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


async def node_add(redis_url: str, queue: str, job_id: str, data: dict[str, object]) -> str:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, "add-job.mjs", redis_url, queue, job_id, json.dumps(data), cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def test_a_node_bullmq_job_is_recorded_and_sent(db: Database, redis_url: str, node_packages: Path) -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme')")
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
            rows = await db.fetch("SELECT status FROM messages WHERE message_id = ANY($1::text[])", [text_id, image_id])
            return [r["status"] for r in rows] == ["sent", "sent"]

        await eventually(both_sent, timeout=30, what="Node jobs recorded and sent")
    async with db.connection() as conn:
        text = await store.load_message(conn, text_id, "acme")
        image = await store.load_message(conn, image_id, "acme")
    assert text is not None and image is not None
    assert (text.source, text.chat_id, text.content, text.queue_name) == (
        "node-job", "60123456789@c.us", "hello from the Node server", WWEBJS.name)
    assert text.raw is not None and text.raw["messageData"]["message"] == "hello from the Node server"
    assert text.external_id == f"ext-{text_id}"
    assert (image.message_type, image.media_url, image.phone_index, image.queue_name) == (
        "image", "https://example.com/a.jpg", 1, META.name)
    assert sorted(engine.sent) == sorted([text_id, image_id])
    history = await db.fetch("SELECT h.to_status FROM message_status_history h JOIN messages m ON m.id = h.message_pk "
                             "WHERE m.message_id = $1 ORDER BY h.id", text_id)
    assert [h["to_status"] for h in history] == ["queued", "sending", "sent"]
