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


async def _owners(db: Db, phones: list[tuple[str, int]]) -> dict[str, int]:
    """session -> the pid driving it, for the sessions that are ready now."""
    owners = {}
    for company, index in phones:
        row = await db.phone_status(company, index)
        if row is not None and row["status"] == "ready":
            owners[f"{company}:{index}"] = row["metadata"]["pid"]
    return owners


async def test_a_joining_process_takes_its_share_a_draining_one_hands_all_back(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    for company, index in PHONES:
        await seed_phone(database_url, company, index)
    sandbox = start_sandbox(tmp_path)
    db = Db(database_url)
    procs: list[RoleProc] = []
    try:
        first = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-first")
        procs.append(first)
        for company, index in PHONES:
            await db.wait_status(company, index, "qr")
            await sandbox.scan(company, index)
            await db.wait_status(company, index, "ready")
        assert set((await _owners(db, PHONES)).values()) == {first.pid}

        # A second process joins: it takes its fair share (2 of 4) by hand-off, at most
        # WWEBJS_HANDOFF_BATCH at a time, and the sessions resume there without a new QR.
        second = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-second",
                              WWEBJS_HANDOFF_BATCH="1")
        procs.append(second)

        async def balanced() -> dict[str, int] | None:
            owners = await _owners(db, PHONES)
            counts = sorted(sum(pid == p.pid for pid in owners.values()) for p in (first, second))
            return owners if len(owners) == len(PHONES) and counts == [2, 2] else None

        owners = await eventually(balanced, timeout=60, what="two sessions on each process")
        assert _sessions(second.health())["share"] == 2 and _sessions(first.health())["members"] == 2
        await asyncio.sleep(2.0)  # several reconcile rounds: a balanced fleet does not move sessions
        assert await _owners(db, PHONES) == owners
        for company, index in PHONES:  # one QR each, ever: the hand-off resumed the stored devices
            statuses = [e["status"] for e in await db.session_events(company) if e["phone_index"] == index]
            assert statuses.count("qr") == 1, statuses

        # Messages go out on whichever process owns each session now.
        ids = [await enqueue_message(database_url, redis_url, company, index, text_payload("60123000111", "hi"))
               for company, index in PHONES]
        for message_id in ids:
            await db.wait_message(message_id, "read", timeout=60)

        # SIGTERM (a rolling restart): the draining process hands its sessions back at once.
        stopped_at = asyncio.get_running_loop().time()
        assert second.stop() == 0
        await eventually(lambda: _all_on(db, first.pid), timeout=30, what="every session back on the first")
        handoff_s = asyncio.get_running_loop().time() - stopped_at
        connections = await sandbox.connections()
        assert connections["overlaps"] == 0
        print(f"\nhand-back after SIGTERM: {handoff_s:.1f}s for {len(PHONES) // 2} sessions")

        # The owner dies (kill -9): a process that joins later takes everything, resuming (no QR).
        first.kill9()
        third = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-third")
        procs.append(third)
        await eventually(lambda: _all_on(db, third.pid), timeout=60, what="every session on the third")
        assert (await sandbox.connections())["overlaps"] == 0
        for company, index in PHONES:
            statuses = [e["status"] for e in await db.session_events(company) if e["phone_index"] == index]
            assert statuses.count("qr") == 1, statuses
    finally:
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()


async def _all_on(db: Db, pid: int) -> bool:
    owners = await _owners(db, PHONES)
    return len(owners) == len(PHONES) and set(owners.values()) == {pid}


async def test_capacity_bounds_each_process_and_the_rest_waits_unowned(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    for company, index in PHONES:
        await seed_phone(database_url, company, index)
    sandbox = start_sandbox(tmp_path)
    db = Db(database_url)
    procs: list[RoleProc] = []
    try:
        small = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-small",
                             WWEBJS_MAX_SESSIONS="1")
        procs.append(small)
        await eventually(lambda: _count_status(db, "qr", 1), timeout=60, what="one session started")
        await asyncio.sleep(2.0)
        assert await _count_status(db, "qr", 1), "a process with WWEBJS_MAX_SESSIONS=1 started more than one"
        assert _sessions(small.health())["capacity"] == 1
        big = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, name="wwebjs-big",
                           WWEBJS_MAX_SESSIONS="3")
        procs.append(big)
        await eventually(lambda: _count_status(db, "qr", len(PHONES)), timeout=60, what="every session started")
        assert (_sessions(small.health())["owned"], _sessions(big.health())["owned"]) == (1, 3)
    finally:
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()


async def _count_status(db: Db, status: str, count: int) -> bool:
    rows = [await db.phone_status(company, index) for company, index in PHONES]
    return sum(1 for row in rows if row is not None and row["status"] == status) == count
