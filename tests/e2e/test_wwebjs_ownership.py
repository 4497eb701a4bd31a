"""One owner per session: two wwebjs processes never drive the same session.

The sandbox network records every connection with the client process that made it and
flags an *overlap* whenever a session connects while another connection of it is still
open (WhatsApp would kick the older one with a conflict). These tests read that record.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.polling import eventually
from tests.support.wwebjs import (
    Db,
    RoleProc,
    SandboxNetwork,
    enqueue_message,
    seed_phone,
    start_sandbox,
    start_wwebjs,
    text_payload,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PHONES = [("own-a", 0), ("own-a", 1), ("own-b", 0), ("own-c", 0)]


async def _healthy(*procs: RoleProc) -> bool:
    try:
        return all(p.health()["status"] == "healthy" for p in procs)
    except Exception:
        return False


def _sessions(health: dict[str, Any]) -> dict[str, Any]:
    check: dict[str, Any] = health["checks"]["wwebjs_sessions"]
    return check


async def _drivers_by_session(sandbox: SandboxNetwork) -> dict[str, set[int]]:
    """session -> the pids of every client process that ever connected it."""
    found: dict[str, set[int]] = {}
    for conn in (await sandbox.connections())["connections"]:
        if conn["session"]:
            found.setdefault(conn["session"], set()).add(conn["client"]["pid"])
    return found


async def test_two_processes_started_together_split_sessions_and_never_share_one(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    sandbox = start_sandbox(tmp_path)
    db = Db(database_url)
    procs: list[RoleProc] = []
    try:
        # Both at once (neither waits for the other), then the phones appear for both at once.
        a = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-a", wait=False,
                         WWEBJS_START_CONCURRENCY="1")
        b = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-b", wait=False,
                         WWEBJS_START_CONCURRENCY="1")
        procs += [a, b]
        await eventually(lambda: _healthy(a, b), timeout=60, what="both wwebjs processes up")
        for company, index in PHONES:
            await seed_phone(database_url, company, index)
        for company, index in PHONES:
            await db.wait_status(company, index, "qr", timeout=60)
            await sandbox.scan(company, index)
        owners: dict[str, int] = {}
        for company, index in PHONES:
            row = await db.wait_status(company, index, "ready")
            owners[f"{company}:{index}"] = row["metadata"]["pid"]
        assert set(owners.values()) <= {a.pid, b.pid}
        print(f"\nsessions per process: a={sum(p == a.pid for p in owners.values())} "
              f"b={sum(p == b.pid for p in owners.values())}")

        ids = {}
        for company, index in PHONES:
            for n in range(5):
                ids[await enqueue_message(database_url, redis_url, company, index,
                                          text_payload(f"60122{n:06d}", f"hello {n}"))] = f"{company}:{index}"
        for message_id in ids:
            await db.wait_message(message_id, "read", timeout=60)

        health = {a.pid: _sessions(a.health()), b.pid: _sessions(b.health())}
        assert health[a.pid]["owned"] + health[b.pid]["owned"] == len(PHONES)
        for pid, check in health.items():
            mine = sorted(s for s, owner in owners.items() if owner == pid)
            assert check["owned"] == len(mine)
            assert check["standby"] == len(PHONES) - len(mine)

        # The network's record: each session only ever driven by its owner, never two at once,
        # and every message arrived over the owner's connection.
        drivers = await _drivers_by_session(sandbox)
        assert drivers == {session: {pid} for session, pid in owners.items()}
        connections = await sandbox.connections()
        assert connections["overlaps"] == 0
        by_connection = {c["id"]: c["client"]["pid"] for c in connections["connections"]}
        for message in await sandbox.messages():
            if message["direction"] == "out":
                assert by_connection[message["connection_id"]] == owners[message["session"]]
        assert {wa_message_id(i) for i in ids} == {m["id"] for m in await sandbox.messages() if m["direction"] == "out"}
    finally:
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()


async def test_a_second_process_started_by_mistake_stays_standby_then_takes_over(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    for company, index in PHONES[:2]:
        await seed_phone(database_url, company, index)
    sandbox = start_sandbox(tmp_path)
    db = Db(database_url)
    procs: list[RoleProc] = []
    try:
        first = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-first")
        procs.append(first)
        for company, index in PHONES[:2]:
            await db.wait_status(company, index, "qr")
            await sandbox.scan(company, index)
            await db.wait_status(company, index, "ready")

        mistake = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-mistake")
        procs.append(mistake)

        async def standby() -> dict[str, Any] | None:
            check = _sessions(mistake.health())
            return check if check["standby"] == 2 else None

        check = await eventually(standby, what="the second process to report standby")
        assert check["owned"] == 0 and check["mode"] == "standby" and check["ok"] is True
        assert check["detail"].startswith("standby: owns no session")
        assert first.health()["checks"]["wwebjs_sessions"]["owned"] == 2
        await asyncio.sleep(2.0)  # several reconcile rounds: still nothing driven by the mistake
        assert await _drivers_by_session(sandbox) == {f"{c}:{i}": {first.pid} for c, i in PHONES[:2]}

        # The owner dies: the standby process takes the sessions over, resuming them (no QR).
        first.kill9()
        for company, index in PHONES[:2]:
            await db.wait_status(company, index, "ready", timeout=60,
                                 where=lambda row: row["metadata"].get("pid") == mistake.pid)
        assert _sessions(mistake.health())["owned"] == 2
        assert (await sandbox.connections())["overlaps"] == 0
        for company, index in PHONES[:2]:  # one QR each, ever: the takeover resumed the stored devices
            statuses = [e["status"] for e in await db.session_events(company) if e["phone_index"] == index]
            assert statuses.count("qr") == 1, statuses
    finally:
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()
