"""Anti-ban controls per phone, end to end: set by the CLI (company defaults, a phone's own)
and the API, obeyed by the wwebjs process on that phone only, through the sandbox network;
today's counts against the caps in the session, bot-status and ``phones list`` answers.

Two paired phones of one company, no global caps: the company's default of 3 messages a day
(failing when reached) and phone 1's own cap of 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.polling import eventually
from tests.support.procs import clean_env
from tests.support.wwebjs import ENCRYPTION_KEY, Db, SandboxNetwork, company_key, paired_stack, seed_phone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ZERO, ONE, FRIEND = "60123450001", "60123450002", "60190000002"


class Stack:
    def __init__(self, sandbox: SandboxNetwork, db: Db, http: httpx.AsyncClient, tmp: Path, database_url: str,
                 redis_url: str) -> None:
        self.sandbox, self.db, self.http = sandbox, db, http
        self.tmp, self.database_url, self.redis_url = tmp, database_url, redis_url

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = clean_env(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
                        DATA_DIR=str(self.tmp / "data"), COLUMNS="250")
        return subprocess.run([sys.executable, "-m", "bisnesgpt", *args], cwd=self.tmp, env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    async def send(self, phone_index: int, text: str) -> dict[str, Any]:
        response = await self.http.post("/api/v1/messages", json={
            "to": FRIEND, "type": "text", "text": {"body": text}, "phoneIndex": phone_index})
        assert response.status_code == 202, response.text
        message_id = response.json()["messageId"]

        async def done() -> dict[str, Any] | None:
            row = await self.db.message(message_id)
            return row if row is not None and row["status"] in ("sent", "delivered", "read", "failed") else None
        return await eventually(done, timeout=30, what=f"message {message_id} sent or failed")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                module_redis: str) -> AsyncIterator[Stack]:
    url = module_db[0]
    tmp = tmp_path_factory.mktemp("antiban-phones")
    await seed_phone(url, "acme", 0)
    await seed_phone(url, "acme", 1)
    await seed_phone(url, "acme", 2, connection_type="meta_direct")
    async with paired_stack(tmp, url, module_redis, phone=ZERO) as running, httpx.AsyncClient(
            base_url=running.api.url, timeout=60,
            headers={"Authorization": f"Bearer {await company_key(url, 'acme')}"}) as http:
        await running.db.wait_status("acme", 1, "qr", timeout=60)
        await running.sandbox.scan("acme", 1, phone=ONE)
        await running.db.wait_status("acme", 1, "ready", timeout=60)
        yield Stack(running.sandbox, running.db, http, tmp, url, module_redis)


async def test_a_phones_own_cap_applies_to_that_phone_only(stack: Stack) -> None:
    company = stack.cli("companies", "antiban", "acme", "--daily-message-cap", "3", "--cap-action", "fail")
    assert company.returncode == 0, company.stderr
    assert "daily_message_cap=3" in company.stdout and "daily_cap_action=fail" in company.stdout
    phone = stack.cli("phones", "set", "acme", "1", "--daily-message-cap", "1", "--simulate-typing")
    assert phone.returncode == 0, phone.stderr
    assert "daily_message_cap=1" in phone.stdout and "simulate_typing=True" in phone.stdout
    wrong = stack.cli("phones", "set", "acme", "1", "--cap-action", "explode")
    assert wrong.returncode == 1 and "daily_cap_action must be one of wait, fail" in wrong.stderr
    not_web = stack.cli("phones", "set", "acme", "2", "--daily-message-cap", "5")
    assert not_web.returncode == 1 and "WhatsApp-Web" in not_web.stderr

    shown = (await stack.http.get("/api/sessions/acme/1/antiban")).json()
    assert shown["effective"]["dailyMessageCap"] == {"value": 1, "source": "phone"}
    assert shown["effective"]["dailyCapAction"] == {"value": "fail", "source": "company"}
    assert shown["effective"]["sendJitterMs"]["source"] == "global"
    assert shown["phone"]["dailyMessageCap"] == 1 and shown["company"]["dailyMessageCap"] == 3

    first, second = await stack.send(1, "one"), await stack.send(1, "two")
    assert first["status"] != "failed", first
    assert (second["status"], second["error_code"]) == ("failed", "DAILY_LIMIT_REACHED")
    others = [await stack.send(0, f"zero {n}") for n in range(3)]
    assert [m["status"] != "failed" for m in others] == [True, True, True]  # the company's 3, not phone 1's 1
    over = await stack.send(0, "zero 4")
    assert (over["status"], over["error_code"]) == ("failed", "DAILY_LIMIT_REACHED")
    # "typing…" is phone 1's own choice: shown there, not on phone 0.
    presence = await stack.sandbox.call("GET", "/admin/presence", params={"session": "acme:1"})
    assert [p["state"] for p in presence["presence"]] == ["composing", "paused"]
    assert (await stack.sandbox.call("GET", "/admin/presence", params={"session": "acme:0"}))["presence"] == []

    # The API sets a phone's controls too (null: inherit again); bad values are problems, not 500s.
    raised = await stack.http.patch("/api/sessions/acme/1/antiban", json={"dailyMessageCap": None, "warmupDays": 2})
    assert raised.status_code == 200, raised.text
    assert raised.json()["effective"]["dailyMessageCap"] == {"value": 3, "source": "company"}
    assert raised.json()["phone"]["warmupDays"] == 2

    # Today's counts against the caps in effect: phone 1 is on day 1 of its 2-day warm-up (3 x 1/2).
    today = {"sentToday": 1, "newChatsToday": 1, "messageCap": 2, "newChatCap": 0, "warmupDay": 1, "warmupDays": 2}
    assert raised.json()["today"] == today
    assert (await stack.http.get("/api/sessions/acme/1")).json()["sending"] == today
    bot = {p["phoneIndex"]: p for p in (await stack.http.get("/api/bot-status/acme")).json()["phones"]}
    assert bot[1]["sending"] == today and bot[2]["sending"] is None
    # The same phone through the v1 phone route; a Cloud API phone has no caps, an unknown one is 404.
    one = await stack.http.get("/api/v1/phones/1")
    assert one.status_code == 200, one.text
    assert one.json() == bot[1]
    assert (await stack.http.get("/api/v1/phones/2")).json()["sending"] is None
    missing = await stack.http.get("/api/v1/phones/7")
    assert missing.status_code == 404 and "phone 7" in missing.json()["detail"]
    assert bot[0]["sending"] == {"sentToday": 3, "newChatsToday": 1, "messageCap": 3, "newChatCap": 0,
                                 "warmupDay": None, "warmupDays": 0}
    listed = stack.cli("phones", "list", "acme")
    assert listed.returncode == 0, listed.stderr
    assert "1/2 msgs, 1 new chats, warm-up day 1/2" in listed.stdout and "3/3 msgs, 1 new chats" in listed.stdout
    bad = await stack.http.patch("/api/sessions/acme/1/antiban", json={"dailyMessageCap": -1})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "dailyMessageCap" in bad.text
    assert (await stack.http.patch("/api/sessions/acme/1/antiban", json={"colour": 1})).status_code == 422
    meta = await stack.http.get("/api/sessions/acme/2/antiban")
    assert meta.status_code == 409 and "wwebjs" in meta.json()["detail"]
    assert (await stack.http.get("/api/sessions/acme/7/antiban")).status_code == 404
    defaults = await stack.http.patch("/api/sessions/acme/antiban", json={"dailyMessageCap": 10})
    assert defaults.status_code == 200 and defaults.json()["company"]["dailyMessageCap"] == 10
    assert (await stack.send(0, "zero 5"))["status"] != "failed"  # 4 of the company's new 10
