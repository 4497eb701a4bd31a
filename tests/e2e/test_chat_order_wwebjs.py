"""Per-chat order through the real send API, the wwebjs engine and the WhatsApp-Web sandbox network.

The sandbox handles each send frame a random 5..65 ms after it arrives (``--latency-ms``,
``--latency-jitter-ms``), so sends in flight together overtake each other; its message record
(``first_at``, ``last_at`` per message) is the witness of the order WhatsApp saw.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.polling import eventually
from tests.support.wwebjs import (
    Db,
    RoleProc,
    SandboxNetwork,
    company_key,
    seed_phone,
    start_api,
    start_sandbox,
    start_wwebjs,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

CONTACT = "60111222333"


class Stack:
    def __init__(self, tmp: Path, database_url: str, redis_url: str) -> None:
        self.tmp, self.database_url, self.redis_url = tmp, database_url, redis_url
        self.db = Db(database_url)
        self.procs: list[RoleProc] = []
        self.sandbox: SandboxNetwork = start_sandbox(tmp, extra=["--latency-ms", "5", "--latency-jitter-ms", "60"])
        self.api = start_api(tmp, database_url, redis_url)
        self.procs.append(self.api)

    def start_wwebjs(self) -> RoleProc:
        wwebjs = start_wwebjs(self.tmp, self.database_url, self.redis_url, self.sandbox.url,
                              WWEBJS_MAX_MESSAGES_PER_SECOND="100", WWEBJS_SEND_JITTER_MS="0")
        self.procs.append(wwebjs)
        return wwebjs

    async def pair(self) -> None:
        async def shows_qr() -> bool:
            row = await self.db.phone_status("acme", 0)
            return row is not None and row["status"] == "qr"

        await eventually(shows_qr, timeout=60, what="the session's QR")
        await self.sandbox.scan("acme", 0, phone="60123456789")
        await self.db.wait_status("acme", 0, "ready", timeout=60)

    async def accept(self, count: int, **extra: Any) -> list[str]:
        key = await company_key(self.database_url, "acme")
        ids = []
        async with httpx.AsyncClient(base_url=self.api.url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=30) as http:
            for i in range(count):
                response = await http.post("/api/v1/messages", json={
                    "to": CONTACT, "type": "text", "text": {"body": f"m{i:02d}"}, **extra})
                assert response.status_code == 202, response.text
                ids.append(str(response.json()["messageId"]))
        return ids

    async def wait_sent(self, ids: list[str], timeout: float = 240) -> None:
        async def all_sent() -> bool:
            rows = await self.db.fetch("SELECT status FROM messages WHERE message_id = ANY($1::text[])", ids)
            return len(rows) == len(ids) and all(r["status"] in ("sent", "delivered", "read") for r in rows)

        await eventually(all_sent, timeout=timeout, interval=0.25, what=f"{len(ids)} messages sent")

    async def received(self, ids: list[str]) -> list[tuple[float, int]]:
        """(time, index) of every receipt of these messages at the network, earliest first; a
        message received twice appears at its first and its last receipt."""
        index_of = {wa_message_id(message_id): index for index, message_id in enumerate(ids)}
        events = []
        for message in await self.sandbox.messages():
            index = index_of.get(str(message["id"]))
            if message["direction"] != "out" or index is None:
                continue
            events.append((float(message["first_at"]), index))
            if int(message["received_count"]) > 1:
                events.append((float(message["last_at"]), index))
        return sorted(events)

    def close(self) -> None:
        for proc in self.procs:
            proc.proc.kill_tree()
        self.sandbox.proc.kill_tree()


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Stack]:
    running = Stack(tmp_path, database_url, redis_url)
    yield running
    running.close()


async def _burst_then_pair(stack: Stack, count: int, **extra: Any) -> list[str]:
    """Accept the burst while the phone is not paired yet: every job the burst has is there at once."""
    await seed_phone(stack.database_url, "acme", 0)
    stack.start_wwebjs()
    ids = await stack.accept(count, **extra)
    await stack.pair()
    return ids


async def test_fifty_messages_to_one_chat_reach_whatsapp_in_acceptance_order(stack: Stack) -> None:
    ids = await _burst_then_pair(stack, 50)
    await stack.wait_sent(ids)
    order = [index for _at, index in await stack.received(ids)]
    assert order == list(range(50))


async def test_jitter_reorders_web_messages_sent_without_order(stack: Stack) -> None:
    """The control: the same burst with ``"ordered": false`` overtakes itself (the witness can fail)."""
    ids = await _burst_then_pair(stack, 50, ordered=False)
    await stack.wait_sent(ids)
    order = [index for _at, index in await stack.received(ids)]
    assert sorted(order) == list(range(50))
    assert order != sorted(order), "jitter did not reorder concurrent sends"


async def test_kill9_of_the_web_engine_midway_keeps_the_order(stack: Stack) -> None:
    ids = await _burst_then_pair(stack, 50)

    async def some_received() -> bool:
        return len(await stack.received(ids)) >= 15

    await eventually(some_received, timeout=120, interval=0.05, what="15 messages at the network")
    stack.procs[-1].kill9()
    stack.start_wwebjs()
    await stack.wait_sent(ids, timeout=300)
    order = [index for _at, index in await stack.received(ids)]
    # A message may arrive twice (sent, then the engine died before recording it): never after a later one.
    assert all(a <= b for a, b in itertools.pairwise(order)), order
    assert sorted(set(order)) == list(range(50))
