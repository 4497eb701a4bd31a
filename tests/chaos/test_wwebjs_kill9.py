"""``kill -9`` of the wwebjs process in the middle of sending.

The test restarts the process itself (supervision is tested elsewhere) and then
proves: every session comes back to ``ready`` from the stored credentials without a new QR,
no message is lost or left in ``sending``, and the sandbox network (a separate process that
recorded everything) saw each message at least once, with duplicates bounded by the sends
that were in flight at the moment of the kill.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.polling import eventually
from tests.support.wwebjs import (
    Db,
    RoleProc,
    enqueue_message,
    seed_phone,
    start_sandbox,
    start_wwebjs,
    text_payload,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SESSIONS = [("kill-a", 0), ("kill-a", 1), ("kill-b", 0)]
PER_SESSION = 20


async def test_kill9_mid_send_loses_nothing_and_resumes_without_qr(tmp_path: Path, database_url: str,
                                                                   redis_url: str) -> None:
    for company, index in SESSIONS:
        await seed_phone(database_url, company, index)
    sandbox = start_sandbox(tmp_path)
    procs: list[RoleProc] = []
    db = Db(database_url)
    try:
        first = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-1")
        procs.append(first)
        for company, index in SESSIONS:
            await db.wait_status(company, index, "qr")
            await sandbox.scan(company, index)
        for company, index in SESSIONS:
            await db.wait_status(company, index, "ready")
        # A slow network: sends are recorded at once but answered 400 ms later, so the kill
        # lands while the network holds sends whose results the process never sees.
        await sandbox.call("PUT", "/admin/config", json={"result_delay_ms": 400})
        devices = {(c, i): (await sandbox.session(c, i))["device"]["deviceId"] for c, i in SESSIONS}

        ids: list[str] = []
        for n in range(PER_SESSION):
            for company, index in SESSIONS:
                ids.append(await enqueue_message(database_url, redis_url, company, index,
                                                 text_payload(f"6011{n:07d}", f"message {n} via {company}:{index}")))

        async def mid_send() -> dict[str, int] | None:
            rows = await db.fetch("SELECT status, count(*) AS n FROM messages WHERE direction = 'outbound' "
                                  "GROUP BY status")
            counts = {r["status"]: r["n"] for r in rows}
            done = sum(counts.get(s, 0) for s in ("sent", "delivered", "read"))
            return counts if counts.get("sending", 0) >= 1 and done >= 5 else None

        at_kill = await eventually(mid_send, interval=0.02, what="sends in flight")
        first.kill9()
        killed_at = time.monotonic()
        in_flight = at_kill.get("sending", 0)

        second = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-2")
        procs.append(second)
        for company, index in SESSIONS:
            await db.wait_status(company, index, "ready", timeout=60,
                                 where=lambda row: row["metadata"].get("pid") == second.pid)
        recovered_seconds = time.monotonic() - killed_at

        for message_id in ids:
            await db.wait_message(message_id, "read", timeout=120)
        rows = await db.fetch("SELECT status, count(*) AS n FROM messages WHERE direction = 'outbound' GROUP BY status")
        assert {r["status"]: r["n"] for r in rows} == {"read": len(ids)}

        # No new QR: resumed from the stored credentials, the same linked devices.
        for company, index in SESSIONS:
            after_kill = [e["status"] for e in await db.session_events(company)]
            assert "qr" not in after_kill[after_kill.index("ready") + 1:], after_kill
            assert (await sandbox.session(company, index))["device"]["deviceId"] == devices[(company, index)]

        # What the network saw: every message, none twice except sends in flight at the kill.
        recorded = {m["id"]: m for m in await sandbox.messages() if m["direction"] == "out"}
        expected = {wa_message_id(message_id) for message_id in ids}
        assert set(recorded) == expected
        resent = [m for m in recorded.values() if m["received_count"] > 1]
        assert 1 <= len(resent) <= max(in_flight, 5), (in_flight, resent)
        assert (await sandbox.connections())["overlaps"] == 0
        print(f"\nkill -9 -> all {len(SESSIONS)} sessions ready again in {recovered_seconds:.2f}s; "
              f"{in_flight} sends in flight at the kill, {len(resent)} received twice by the network "
              f"(deduplicated by message id), {len(ids)} messages all read")
    finally:
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()
        await asyncio.sleep(0)
