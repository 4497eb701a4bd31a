"""The rollback target: `bisnesgpt run legacy` alone serves the API and sends through both engines.

One process on PORT, no api/wwebjs/meta processes: a wwebjs phone (paired through the
WhatsApp-Web sandbox) and a Meta phone (through the Cloud API emulator) both get their
message out through the same API; Meta's signed webhooks come back to the same process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.meta import (
    APP_SECRET,
    ENCRYPTION_KEY,
    VERIFY_TOKEN,
    EmulatorProc,
    add_meta_phone,
    open_window,
)
from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port, http_ok
from tests.support.wwebjs import FAST_WWEBJS_ENV, start_sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ADMIN_KEY = "legacy-test-admin-key"
META_PHONE_ID = "106540352242922"


async def wait_row(db: Database, query: str, *args: object, timeout: float = 45) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await db.fetchrow(query, *args)
        if row is not None:
            return dict(row)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no row for {query} {args}")
        await asyncio.sleep(0.1)


async def test_legacy_alone_serves_the_api_and_both_engines(tmp_path: Path, db: Database, database_url: str,
                                                            redis_url: str) -> None:
    port = free_port()
    emulator = EmulatorProc(tmp_path, webhook_url=f"http://127.0.0.1:{port}/webhook/meta", phones=[META_PHONE_ID])
    sandbox = start_sandbox(tmp_path)
    legacy: Proc | None = None
    try:
        await add_meta_phone(db, company_id="acme", phone_index=1, phone_number_id=META_PHONE_ID)
        await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                         "VALUES ('acme', 0, 'wwebjs')")
        await open_window(db, ["60123450001"], company_id="acme", phone_index=1)
        env = clean_env(
            PORT=str(port), HOST="127.0.0.1", DATABASE_URL=database_url, REDIS_URL=redis_url,
            ENCRYPTION_KEY=ENCRYPTION_KEY, ADMIN_API_KEY=ADMIN_KEY, META_APP_SECRET=APP_SECRET,
            META_WEBHOOK_VERIFY_TOKEN=VERIFY_TOKEN, META_GRAPH_URL=emulator.url,
            META_MAX_MESSAGES_PER_SECOND="1000", WWEBJS_DRIVER="sandbox", WWEBJS_SANDBOX_URL=sandbox.url,
            **FAST_WWEBJS_ENV,
        )
        legacy = Proc(["run", "legacy"], cwd=tmp_path, env=env, log_name="legacy")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=60, what="legacy /health 200")

        # The wwebjs session runs inside legacy: it shows a QR, is scanned, becomes ready.
        await wait_row(db, "SELECT 1 FROM phone_status WHERE company_id = 'acme' AND phone_index = 0 "
                           "AND status = 'qr'")
        await sandbox.scan("acme", 0, phone="60199990000")
        await wait_row(db, "SELECT 1 FROM phone_status WHERE company_id = 'acme' AND phone_index = 0 "
                           "AND status = 'ready'")

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as client:
            web = await client.post("/api/v2/messages/text/acme/60123450002",
                                    json={"message": "via whatsapp web", "phoneIndex": 0})
            cloud = await client.post("/api/v2/messages/text/acme/60123450001",
                                      json={"message": "via cloud api", "phoneIndex": 1})
            health_all = await client.get("/health/all")
        assert web.status_code == 202, web.text
        assert cloud.status_code == 202, cloud.text
        assert (web.json()["queueName"], cloud.json()["queueName"]) == ("wwebjs-messages", "meta-messages")
        assert health_all.status_code in (200, 503)  # answered by legacy itself

        for body, provider in ((web.json(), "wwebjs"), (cloud.json(), "meta")):
            row = await wait_row(db, "SELECT status, external_id, provider FROM messages WHERE message_id = $1 "
                                     "AND status IN ('sent', 'delivered', 'read')", body["messageId"])
            assert row["provider"] == provider and row["external_id"]
        sent_by_emulator = [r for r in emulator.requests(operation="send") if r["http_status"] == 200]
        assert len(sent_by_emulator) == 1
        web_row = await db.fetchrow("SELECT external_id FROM messages WHERE message_id = $1", web.json()["messageId"])
        assert web_row is not None
        received = [m for m in await sandbox.messages() if m["direction"] == "out"]
        assert [(m["id"], m["received_count"]) for m in received] == [(web_row["external_id"], 1)]

        # Meta's signed webhook for an inbound message comes back to the same process.
        inbound = emulator.admin("POST", "/inbound", json={"phone_number_id": META_PHONE_ID,
                                                           "from": "60123450001", "text": "reply to legacy"})
        row = await wait_row(db, "SELECT company_id, phone_index, content FROM messages "
                                 "WHERE external_id = $1 AND direction = 'inbound'", inbound["message"]["id"])
        assert (row["company_id"], row["phone_index"], row["content"]) == ("acme", 1, "reply to legacy")
    finally:
        if legacy is not None:
            legacy.kill_tree()
        sandbox.proc.kill_tree()
        emulator.close()
