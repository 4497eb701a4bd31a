"""Per-chat order through the real send API, meta engine and Cloud API emulator (all spawned).

The emulator delays every send request by a random 0..``--latency-jitter-ms``, so sends in
flight together overtake each other: its request record shows the order "Meta" saw them in.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.tenancy import store as tenancy
from tests.support.chaos import chat_order_violations
from tests.support.meta import EmulatorProc, MetaProc, add_meta_phone, meta_env, open_window
from tests.support.pipeline import ApiServer
from tests.support.polling import eventually
from tests.support.procs import free_port

pytestmark = pytest.mark.e2e

PHONE_ID = "300000000000077"
TOKEN = "order-token"
CONTACT = "60123450001"
# No pair-rate pacing (Meta's one message per 6 s to one user): these tests send bursts to one chat.
PHONE_SETTINGS = {"pair_interval_ms": 0, "messages_per_second": 200}


@dataclass
class Stack:
    db: Database
    emulator: EmulatorProc
    api: ApiServer
    meta_env: dict[str, str]
    workdir: Path
    http: httpx.AsyncClient
    meta: MetaProc | None = None

    def start_meta(self) -> MetaProc:
        """The engine, started once the burst is accepted: its jobs are all there at once."""
        self.meta = MetaProc(self.workdir, self.meta_env)
        return self.meta

    async def send(self, to: str, body: str, **extra: Any) -> str:
        response = await self.http.post("/api/v1/messages", json={
            "to": to, "type": "text", "text": {"body": body}, **extra})
        assert response.status_code == 202, response.text
        return str(response.json()["messageId"])

    def received(self) -> list[tuple[str, str]]:
        """(recipient, text) of every send the emulator accepted, in the order it handled them."""
        return [(str(r["wa_id"]), str(r["body"]["text"]["body"]))
                for r in self.emulator.requests(operation="send", body=True) if r["http_status"] == 200]

    async def wait_sent(self, ids: list[str], timeout: float = 180) -> None:
        async def all_sent() -> bool:
            count = await self.db.fetchval(
                "SELECT count(*) FROM messages WHERE message_id = ANY($1::text[]) "
                "AND status IN ('sent', 'delivered', 'read')", ids)
            return bool(count == len(ids))

        await eventually(all_sent, timeout=timeout, interval=0.2, what=f"{len(ids)} messages sent")


@pytest.fixture
async def stack(db: Database, database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    emulator = EmulatorProc(tmp_path, phones=[f"{PHONE_ID}:{TOKEN}"],
                            extra=["--latency-ms", "5", "--latency-jitter-ms", "60", "--pair-interval-ms", "0"])
    await add_meta_phone(db, phone_number_id=PHONE_ID, token=TOKEN, settings=PHONE_SETTINGS)
    await open_window(db, [CONTACT, *(f"6012346{i:04d}" for i in range(20))])
    async with db.transaction() as conn:
        _record, key = await tenancy.create_api_key(conn, company_id="acme", name="order-tests")
    api = await ApiServer(tmp_path / "api", database_url, redis_url).start()
    env = meta_env(database_url, redis_url, free_port(), emulator.url)
    http = httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    stack = Stack(db, emulator, api, env, tmp_path, http)
    try:
        yield stack
    finally:
        await http.aclose()
        if stack.meta is not None:
            stack.meta.close()
        api.stop()
        emulator.close()


def texts_to(received: list[tuple[str, str]], contact: str) -> list[str]:
    return [text for to, text in received if to == contact]


@pytest.mark.timeout(300)
async def test_fifty_messages_to_one_chat_arrive_in_acceptance_order(stack: Stack) -> None:
    ids = [await stack.send(CONTACT, f"m{i:02d}") for i in range(50)]
    stack.start_meta()
    await stack.wait_sent(ids)
    got = texts_to(stack.received(), CONTACT)
    assert got == [f"m{i:02d}" for i in range(50)]


@pytest.mark.timeout(300)
async def test_jitter_reorders_messages_sent_without_order(stack: Stack) -> None:
    """The control: the same burst with ``"ordered": false`` overtakes itself (the witness can fail)."""
    ids = [await stack.send(CONTACT, f"u{i:02d}", ordered=False) for i in range(50)]
    stack.start_meta()
    await stack.wait_sent(ids)
    got = texts_to(stack.received(), CONTACT)
    assert sorted(got) == [f"u{i:02d}" for i in range(50)]
    assert got != sorted(got), "jitter did not reorder concurrent sends"


@pytest.mark.timeout(300)
async def test_a_retryable_error_on_the_third_holds_the_chat_until_it_is_sent(stack: Stack) -> None:
    # The third message is the only location message: the rule fails its first attempt (131000, retryable).
    stack.emulator.admin("POST", "/rules", json={"code": 131000, "type": "location", "times": 1})
    ids = [await stack.send(CONTACT, f"m{i:02d}") for i in range(2)]
    response = await stack.http.post("/api/v1/messages", json={
        "to": CONTACT, "type": "location", "location": {"latitude": 3.1, "longitude": 101.6, "name": "m02"}})
    assert response.status_code == 202, response.text
    ids.append(response.json()["messageId"])
    ids += [await stack.send(CONTACT, f"m{i:02d}") for i in range(3, 50)]
    stack.start_meta()
    await stack.wait_sent(ids)
    log = stack.emulator.requests(operation="send", body=True)
    refused = [r for r in log if r.get("type") == "location" and r["http_status"] != 200]
    assert len(refused) == 1  # the retry really happened
    order = []
    for r in log:
        if r["http_status"] == 200 and r["wa_id"] == CONTACT:
            body = r["body"]
            order.append(body["location"]["name"] if body["type"] == "location" else body["text"]["body"])
    assert order == [f"m{i:02d}" for i in range(50)]


@pytest.mark.timeout(400)
async def test_kill9_of_the_engine_midway_keeps_the_order(stack: Stack) -> None:
    ids = [await stack.send(CONTACT, f"m{i:02d}") for i in range(50)]
    meta = stack.start_meta()

    async def some_sent() -> bool:
        return len(texts_to(stack.received(), CONTACT)) >= 15

    await eventually(some_sent, timeout=120, interval=0.05, what="15 messages at the emulator")
    meta.kill9()
    meta.restart()
    await stack.wait_sent(ids, timeout=240)
    got = [int(text[1:]) for text in texts_to(stack.received(), CONTACT)]
    # A message may go twice (sent, then the engine died before recording it): never after a later one.
    assert got == sorted(got), got
    assert sorted(set(got)) == list(range(50))
    assert chat_order_violations({CONTACT: [f"m{i:02d}" for i in range(50)]},
                                 {CONTACT: texts_to(stack.received(), CONTACT)}) == []


@pytest.mark.timeout(300)
async def test_twenty_chats_at_once_are_not_serialised(stack: Stack) -> None:
    chats = [f"6012346{i:04d}" for i in range(20)]
    ids = [await stack.send(chat, f"{c:02d}-{k}") for k in range(5) for c, chat in enumerate(chats)]
    stack.start_meta()
    await stack.wait_sent(ids)
    log = [r for r in stack.emulator.requests(operation="send", body=True)
           if r["http_status"] == 200 and r["wa_id"] in chats]
    for chat in chats:
        texts = [str(r["body"]["text"]["body"]) for r in log if r["wa_id"] == chat]
        assert [t.split("-")[1] for t in texts] == ["0", "1", "2", "3", "4"], (chat, texts)
    # Different chats' messages are at the emulator at the same time (each request is held there
    # 5..65 ms): per-chat order holds back only the chat, never the phone.
    overlapping = max(len({o["wa_id"] for o in log if o["received_ts"] <= r["received_ts"] <= o["ts"]})
                      for r in log)
    assert overlapping >= 3, f"at most {overlapping} chats in flight at once"
    switches = sum(1 for a, b in itertools.pairwise(log) if a["wa_id"] != b["wa_id"])
    assert switches >= 50, switches
