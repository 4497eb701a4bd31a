"""Fencing: an owner frozen past its lease never drives or writes the session again when it resumes.

Two wwebjs processes; the owner of a paired session is frozen (SIGSTOP) while idle, longer
than its lease (``WWEBJS_LEASE_TTL_SECONDS`` 6 s): the other process takes the session over
and sends what was queued meanwhile. Then the frozen one resumes (SIGCONT) with a stale view:
by its own (frozen) reckoning it still held the lease a moment ago, its socket to the network
is gone. The lease epoch fences it: it writes no status over its successor's, sends nothing,
and stops its driver (it may get the session back later, as a regular hand-off from its
successor); every message is driven by exactly one process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.cluster import messages_from_two_processes, two_drivers
from tests.support.polling import eventually
from tests.support.wwebjs import Db, RoleProc, enqueue_message, seed_phone, start_sandbox, start_wwebjs, text_payload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
LEASE_TTL_S = 6.0


async def test_an_owner_frozen_past_its_lease_resumes_fenced_off(tmp_path: Path, database_url: str,
                                                                redis_url: str) -> None:
    await seed_phone(database_url, "fence", 0)
    sandbox = start_sandbox(tmp_path)
    db = Db(database_url)
    procs: list[RoleProc] = []
    frozen: RoleProc | None = None
    try:
        procs = [start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name=f"wwebjs-{n}",
                              WWEBJS_LEASE_TTL_SECONDS=f"{LEASE_TTL_S:g}") for n in ("a", "b")]
        await db.wait_status("fence", 0, "qr", timeout=60)
        await sandbox.scan("fence", 0)
        first = await db.wait_status("fence", 0, "ready", timeout=60)
        frozen = next(p for p in procs if p.pid == first["metadata"]["pid"])
        successor = next(p for p in procs if p is not frozen)

        async def send(n: int) -> str:
            return await enqueue_message(database_url, redis_url, "fence", 0, text_payload(f"60133{n:06d}", f"m{n}"))

        async def sent(message_ids: list[str]) -> None:
            async def all_out() -> bool:
                rows = [await db.message(m) for m in message_ids]
                return all(r is not None and r["status"] in ("sent", "delivered", "read") for r in rows)

            await eventually(all_out, timeout=30, what=f"{len(message_ids)} messages sent")

        ids = [await send(n) for n in range(3)]
        await sent(ids)

        os.kill(frozen.pid, signal.SIGSTOP)  # idle: nothing of its own in flight
        stopped = time.monotonic()
        ids += [await send(n) for n in range(3, 6)]  # queued while the owner is frozen
        taken = await db.wait_status("fence", 0, "ready", timeout=60,
                                     where=lambda r: r["metadata"]["pid"] == successor.pid)
        taken_at = time.time()
        await sent(ids[3:])
        assert time.monotonic() - stopped >= LEASE_TTL_S - 1.5  # not before the lease could expire

        os.kill(frozen.pid, signal.SIGCONT)
        ids += [await send(n) for n in range(6, 9)]
        await asyncio.sleep(LEASE_TTL_S)  # the resumed process has had every chance to act
        await sent(ids[6:])

        # The resumed process wrote nothing over its successor: the session's statuses since the
        # takeover are the successor's alone — none at all, or, when the fair share gives the
        # session back to the resumed process (holder order), first the successor's hand-off.
        later = [r["data"] for r in await db.fetch(
            "SELECT data FROM tenant_events WHERE company_id = 'fence' AND type = 'session.status' "
            "AND created_at > $1 ORDER BY created_at, id", taken["updated_at"])]
        handed = {"status": "disconnected", "reason": "handed over to another wwebjs process"}
        assert later == [] or {k: later[0].get(k) for k in handed} == handed, f"written after the takeover: {later}"

        # Every message reached the network once, from one process; those queued during the
        # freeze from the successor; and no two processes ever had the session connected at once.
        receipts: list[dict[str, Any]] = (await sandbox.call("GET", "/admin/receipts"))["receipts"]
        assert messages_from_two_processes(receipts) == []
        assert sorted(r["id"] for r in receipts) == sorted(wa_message_id(i) for i in ids)
        late = [r for r in receipts if r["id"] in {wa_message_id(i) for i in ids[3:6]}]
        assert {(r["client"] or {}).get("pid") for r in late} == {successor.pid}
        connections = (await sandbox.connections("fence:0"))["connections"]
        assert two_drivers(connections) == []
        stale = [c for c in connections if c["client"]["pid"] == frozen.pid and c["opened_at"] < taken_at]
        assert stale and all(c["closed_at"] is not None and c["closed_at"] < taken_at + LEASE_TTL_S for c in stale)
    finally:
        if frozen is not None:
            os.kill(frozen.pid, signal.SIGCONT)
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()
