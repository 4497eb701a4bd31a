"""Sending that does not get numbers banned, end to end through the sandbox network: the
on-WhatsApp check before a first message, "typing…" before each text, daily caps for
messages and new chats, and the warm-up of a newly paired number.

One wwebjs process with the controls on: caps of 4 messages and 2 new chats a day, failing
when reached, over a 2-day warm-up (day 1: 2 messages, 1 new chat).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.polling import eventually
from tests.support.wwebjs import (
    Db,
    SandboxNetwork,
    company_key,
    paired_stack,
    seed_phone,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ME, FIRST, SECOND, THIRD, NOBODY = "60123450001", "60190000002", "60190000003", "60190000004", "60190000404"
CONTROLS = {"WWEBJS_SIMULATE_TYPING": "true", "WWEBJS_TYPING_MS_PER_CHAR": "20", "WWEBJS_TYPING_MAX_MS": "3000",
            "WWEBJS_CHECK_ON_WHATSAPP": "true", "WWEBJS_DAILY_MESSAGE_CAP": "4", "WWEBJS_DAILY_NEW_CHAT_CAP": "2",
            "WWEBJS_DAILY_CAP_ACTION": "fail", "WWEBJS_WARMUP_DAYS": "2"}


def detail(row: dict[str, Any]) -> str:
    """A failed message's ``error.details.detail``."""
    details = row["error_details"]
    return str((json.loads(details) if isinstance(details, str) else details)["detail"])


class Stack:
    def __init__(self, sandbox: SandboxNetwork, db: Db, http: httpx.AsyncClient) -> None:
        self.sandbox, self.db, self.http = sandbox, db, http

    async def send(self, to: str, text: str) -> str:
        response = await self.http.post("/api/v1/messages", json={"to": to, "type": "text", "text": {"body": text}})
        assert response.status_code == 202, response.text
        message_id: str = response.json()["messageId"]
        return message_id

    async def outcome(self, message_id: str) -> dict[str, Any]:
        """The message once it left (sent, delivered or read) or failed."""
        async def check() -> dict[str, Any] | None:
            row = await self.db.message(message_id)
            return row if row is not None and row["status"] in ("sent", "delivered", "read", "failed") else None
        return await eventually(check, timeout=30, what=f"message {message_id} sent or failed")

    async def out_to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in await self.sandbox.messages("acme:0")
                if m["direction"] == "out" and m["chat"] == f"{number}@c.us"]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                module_redis: str) -> AsyncIterator[Stack]:
    url = module_db[0]
    tmp = tmp_path_factory.mktemp("antiban")
    await seed_phone(url, "acme", 0)
    async with paired_stack(tmp, url, module_redis, phone=ME, **CONTROLS) as running, httpx.AsyncClient(
            base_url=running.api.url, timeout=60,
            headers={"Authorization": f"Bearer {await company_key(url, 'acme')}"}) as http:
        yield Stack(running.sandbox, running.db, http)


async def test_checks_types_caps_and_warms_up(stack: Stack) -> None:
    # A number without WhatsApp: asked first, failed NOT_ON_WHATSAPP, nothing sent (the network's
    # own refusal would be RECIPIENT_NOT_ON_WHATSAPP, after a send).
    nobody = await stack.outcome(await stack.send(NOBODY, "hello?"))
    assert (nobody["status"], nobody["error_code"]) == ("failed", "NOT_ON_WHATSAPP")
    assert await stack.out_to(NOBODY) == []

    # The first message of day 1 opens a chat; "typing…" shows before it, for 20 ms a character.
    text = "Your order has shipped and arrives tomorrow"
    first = await stack.outcome(await stack.send(FIRST, text))
    assert first["status"] != "failed", first
    [sent] = await stack.out_to(FIRST)
    presence = (await stack.sandbox.call("GET", "/admin/presence", params={"session": "acme:0"}))["presence"]
    assert [(p["chat"], p["state"]) for p in presence] == [(f"{FIRST}@c.us", "composing"), (f"{FIRST}@c.us", "paused")]
    composing, paused = presence[0]["at"], presence[1]["at"]
    assert paused - composing >= len(text) * 0.020 * 0.9  # shown for about as long as typing it takes
    assert composing <= paused <= sent["first_at"]

    # Warm-up day 1: one new chat, two messages.
    second = await stack.outcome(await stack.send(SECOND, "hi"))
    assert (second["status"], second["error_code"]) == ("failed", "DAILY_LIMIT_REACHED")
    assert "new-chat cap" in detail(second) and "warm-up day 1" in detail(second)
    assert (await stack.outcome(await stack.send(FIRST, "again")))["status"] != "failed"
    third = await stack.outcome(await stack.send(FIRST, "once more"))
    assert (third["status"], third["error_code"]) == ("failed", "DAILY_LIMIT_REACHED")
    assert "message cap reached (2/2" in detail(third)
    assert await stack.out_to(SECOND) == [] and len(await stack.out_to(FIRST)) == 2

    # Past the warm-up (paired three days ago): the configured caps, 4 messages and 2 new chats.
    await stack.db.execute("UPDATE wwebjs_sessions SET paired_at = now() - interval '3 days' "
                           "WHERE company_id = 'acme' AND phone_index = 0")
    assert (await stack.outcome(await stack.send(SECOND, "hi")))["status"] != "failed"
    third_chat = await stack.outcome(await stack.send(THIRD, "hi"))
    assert (third_chat["status"], third_chat["error_code"]) == ("failed", "DAILY_LIMIT_REACHED")
    assert "new-chat cap reached (2/2 today)" in detail(third_chat)
    # A message's own pacing: no "typing…" for this one (the setting is on), and a pause first.
    response = await stack.http.post("/api/v1/messages", json={"to": SECOND, "type": "text", "text": {
        "body": "and you"}, "simulateTyping": False, "delayMs": 1500})
    assert response.status_code == 202, response.text
    own = await stack.outcome(response.json()["messageId"])  # message 4 of 4
    assert own["status"] != "failed", own
    [_first, later] = await stack.out_to(SECOND)
    assert later["body"]["text"] == "and you" and later["first_at"] - own["created_at"].timestamp() >= 1.5
    presence = (await stack.sandbox.call("GET", "/admin/presence", params={"session": "acme:0"}))["presence"]
    assert [p["state"] for p in presence if p["chat"] == f"{SECOND}@c.us"] == ["composing", "paused"]  # "hi" only
    over = await stack.outcome(await stack.send(SECOND, "one too many"))
    assert (over["status"], over["error_code"]) == ("failed", "DAILY_LIMIT_REACHED")
