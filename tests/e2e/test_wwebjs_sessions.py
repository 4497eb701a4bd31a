"""The WhatsApp-Web engine through its running processes: sandbox network + wwebjs + api.

Everything goes over real HTTP/WebSocket between separate processes, against real
PostgreSQL and Redis. Messages are created the way the send API will create them
(``tests.support.wwebjs.enqueue_message``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.engines.wwebjs.qr import png_from_data_url
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queues import WWEBJS
from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.polling import eventually
from tests.support.wwebjs import (
    ADMIN_KEY,
    Db,
    RoleProc,
    SandboxNetwork,
    company_key,
    enqueue_message,
    png_size,
    qr_matrix_from_png,
    qr_matrix_of,
    seed_phone,
    start_api,
    start_sandbox,
    start_wwebjs,
    text_payload,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


class Stack:
    def __init__(self, tmp: Path, database_url: str, redis_url: str) -> None:
        self.tmp, self.database_url, self.redis_url = tmp, database_url, redis_url
        self.db = Db(database_url)
        self.sandbox: SandboxNetwork | None = None
        self.procs: list[RoleProc] = []

    def start(self, *, api: bool = True, **wwebjs_env: str) -> tuple[SandboxNetwork, RoleProc, RoleProc | None]:
        sandbox = self.start_sandbox()
        wwebjs = self.start_wwebjs(**wwebjs_env)
        return sandbox, wwebjs, self.start_api() if api else None

    def start_sandbox(self) -> SandboxNetwork:
        self.sandbox = start_sandbox(self.tmp)
        return self.sandbox

    def start_wwebjs(self, **env: str) -> RoleProc:
        assert self.sandbox is not None
        wwebjs = start_wwebjs(self.tmp, self.database_url, self.redis_url, self.sandbox.url, **env)
        self.procs.append(wwebjs)
        return wwebjs

    def start_api(self) -> RoleProc:
        api = start_api(self.tmp, self.database_url, self.redis_url)
        self.procs.append(api)
        return api

    def close(self) -> None:
        for proc in self.procs:
            proc.proc.kill_tree()
        if self.sandbox is not None:
            self.sandbox.proc.kill_tree()


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str):  # type: ignore[no-untyped-def]
    running = Stack(tmp_path, database_url, redis_url)
    yield running
    running.close()


class SseReader:
    """Collects the events of an SSE stream in the background."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=None) as client, client.stream(
                "GET", self.url, headers={"Authorization": f"Bearer {self.key}"}) as response:
            self.status = response.status_code
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    self.events.append((event, json.loads(line[6:])))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def statuses(self, event_type: str = "status_update") -> list[str]:
        """Statuses in order (the snapshot sent on connect first, then live events)."""
        return [data.get("status", "") for kind, data in self.events if kind == event_type]


async def test_session_lifecycle_qr_send_receive_disconnect_logout(stack: Stack) -> None:
    await seed_phone(stack.database_url, "acme", 0)
    sandbox = stack.start_sandbox()
    api = stack.start_api()
    db = stack.db
    key = await company_key(stack.database_url, "acme")
    headers = {"Authorization": f"Bearer {key}"}
    sse = SseReader(f"{api.url}/api/sessions/acme/events", key)
    sse.start()
    http = httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30)
    try:
        await eventually(lambda: _true(bool(sse.events)), what="the SSE snapshot")
        assert sse.events[0][1]["status"] == "pending" and sse.events[0][1]["snapshot"] is True
        wwebjs = stack.start_wwebjs(WWEBJS_MEDIA_MAX_BYTES=str(2 << 20))

        # --- a new phone: initializing -> qr, with a valid PNG of the code the network issued ---------
        row = await db.wait_status("acme", 0, "qr")
        events = await db.session_events("acme")
        assert [e["status"] for e in events][:2] == ["initializing", "qr"]
        network_code = (await sandbox.session("acme", 0))["qr"]
        assert network_code and network_code.startswith("2@")
        png = png_from_data_url(row["metadata"]["qrCode"])
        assert png_size(png)[0] > 100
        assert qr_matrix_from_png(png) == qr_matrix_of(network_code), "the PNG does not encode the network's QR"

        response = await http.get("/api/sessions/acme/0/qr", headers={"Accept": "image/png"})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert qr_matrix_from_png(response.content) == qr_matrix_of(network_code)
        as_json = (await http.get("/api/sessions/acme/0/qr", params={"format": "json"})).json()
        assert as_json["qrCode"].startswith("data:image/png;base64,")
        assert base64.b64decode(as_json["qrCode"].split(",", 1)[1]) == response.content

        # --- a message for a session that is not ready waits, queued, not failed ------------------------
        early = await enqueue_message(stack.database_url, stack.redis_url, "acme", 0,
                                      text_payload("60111000001", "sent once the phone is paired"))
        hurried = await enqueue_message(stack.database_url, stack.redis_url, "acme", 0,
                                        text_payload("60111000009", "only worth sending within a second"),
                                        deadline_at=datetime.now(UTC) + timedelta(seconds=1))
        await asyncio.sleep(2.0)
        waiting = await db.message(early)
        assert waiting is not None and waiting["status"] == "queued" and waiting["attempts"] == 0
        expired = await db.wait_message(hurried, "failed")
        assert expired["error_code"] == "DEADLINE_EXCEEDED" and expired["attempts"] == 0

        # --- scanned -> authenticated -> ready; the waiting message goes out ----------------------------
        await sandbox.scan("acme", 0, phone="60123456789")
        ready = await db.wait_status("acme", 0, "ready")
        assert ready["phone_number"] == "60123456789"
        assert ready["metadata"]["pid"] == wwebjs.pid
        early_row = await db.wait_message(early, "read")
        assert early_row["external_id"] == wa_message_id(early)
        assert await db.history(early) == ["queued", "sending", "sent", "delivered", "read"]
        session = (await http.get("/api/sessions/acme/0")).json()
        assert session["status"] == "ready" and session["paired"] and session["owner"].startswith("wwebjs@")

        # --- text and media, reply, reaction, edit, delete: acks move every one to read ----------------
        media_url = sandbox.url + "/samples/image.png"
        pdf = base64.b64encode(b"%PDF-1.4 sandbox document").decode()
        sends = {
            "text": text_payload("60111000002", "hello from the tests"),
            "image": {"messaging_product": "whatsapp", "to": "60111000002", "type": "image",
                      "image": {"link": media_url, "caption": "an image by URL"}},
            "document": {"messaging_product": "whatsapp", "to": "60111000002", "type": "document",
                         "document": {"link": f"data:application/pdf;base64,{pdf}", "filename": "quote.pdf"}},
            "video": {"messaging_product": "whatsapp", "to": "60111000002", "type": "video",
                      "video": {"link": sandbox.url + "/samples/video.mp4"}},
            "audio": {"messaging_product": "whatsapp", "to": "60111000002", "type": "audio",
                      "audio": {"link": sandbox.url + "/samples/audio.ogg"}},
        }
        ids = {name: await enqueue_message(stack.database_url, stack.redis_url, "acme", 0, payload)
               for name, payload in sends.items()}
        for message_id in ids.values():
            await db.wait_message(message_id, "read")
        target = (await db.message(ids["text"]))["external_id"]
        follow_ups = {
            "reply": {**text_payload("60111000002", "a reply"), "context": {"message_id": target}},
            "reaction": {"messaging_product": "whatsapp", "to": "60111000002", "type": "reaction",
                         "reaction": {"message_id": target, "emoji": "\N{THUMBS UP SIGN}"}},
            "edit": {"messaging_product": "whatsapp", "to": "60111000002", "type": "edit",
                     "edit": {"message_id": target, "text": {"body": "hello (edited)"}}},
            "delete": {"messaging_product": "whatsapp", "to": "60111000002", "type": "delete",
                       "delete": {"message_id": target}},
        }
        for name, payload in follow_ups.items():
            ids[name] = await enqueue_message(stack.database_url, stack.redis_url, "acme", 0, payload)
            await db.wait_message(ids[name], "read")
        recorded = {m["id"]: m for m in await sandbox.messages("acme:0")}
        for name, message_id in ids.items():
            found = recorded[wa_message_id(message_id)]
            assert found["received_count"] == 1, name
            assert found["kind"] == (name if name != "reply" else "text")
        assert recorded[wa_message_id(ids["image"])]["body"]["media"]["size"] == len(
            httpx.get(media_url).content)
        assert recorded[wa_message_id(ids["document"])]["body"]["media"]["filename"] == "quote.pdf"
        assert recorded[wa_message_id(ids["reply"])]["body"]["replyTo"] == target
        edited = recorded[target]["body"]
        assert edited["editedText"] == "hello (edited)" and edited["revoked"] is True
        assert edited["reaction"] == "\N{THUMBS UP SIGN}"

        # --- what WhatsApp Web cannot or will not take fails for good, with a code ---------------------
        refused = {
            "UNSUPPORTED_MESSAGE_TYPE": {"messaging_product": "whatsapp", "to": "60111000002", "type": "template",
                                         "template": {"name": "hello_world", "language": {"code": "en"}}},
            "RECIPIENT_NOT_ON_WHATSAPP": text_payload("0111000002", "nobody there"),
            "MEDIA_TOO_LARGE": {"messaging_product": "whatsapp", "to": "60111000002", "type": "document",
                                "document": {"link": sandbox.url + "/samples/large.bin?size=3000000"}},
        }
        for code, payload in refused.items():
            failed = await db.wait_message(
                await enqueue_message(stack.database_url, stack.redis_url, "acme", 0, payload), "failed")
            assert failed["error_code"] == code, (code, failed["error_code"], failed["error_title"])

        # --- an inbound message is stored (direction inbound) and published -----------------------------
        injected = await sandbox.inbound("acme", 0, **{"from": "60199887766", "text": "hi there",
                                                       "pushName": "Customer"})
        assert injected["pushed"] is True

        async def stored() -> dict[str, Any] | None:
            return await db.fetchrow("SELECT * FROM messages WHERE external_id = $1 AND direction = 'inbound'",
                                     injected["id"])

        inbound = await eventually(stored, what="inbound message stored")
        assert (inbound["chat_id"], inbound["content"], inbound["provider"]) == ("60199887766@c.us", "hi there",
                                                                                 "wwebjs")
        event = await db.fetchrow("SELECT data FROM tenant_events WHERE type = 'message.inbound' AND company_id = $1",
                                  "acme")
        assert event is not None and event["data"]["external_id"] == injected["id"]
        assert event["data"]["payload"]["text"]["body"] == "hi there"
        await eventually(lambda: _delivered(sandbox, injected["id"]), what="inbound confirmed to the network")

        # --- a forced disconnect: disconnected (with the backoff) -> reconnected -> ready --------------
        before = len((await sandbox.connections("acme:0"))["connections"])
        await sandbox.fault("acme", 0, type="disconnect")
        down = await db.wait_status("acme", 0, "disconnected")
        assert "disconnected by the network" in down["metadata"]["reason"]
        assert 300 <= down["metadata"]["retryInMs"] <= 500  # base 400 ms +-20 %
        await db.wait_status("acme", 0, "ready", where=lambda r: r["last_seen"] > down["last_seen"])
        connections = await sandbox.connections("acme:0")
        assert len(connections["connections"]) == before + 1 and connections["overlaps"] == 0
        after_reconnect = await enqueue_message(stack.database_url, stack.redis_url, "acme", 0,
                                                text_payload("60111000003", "after the reconnect"))
        await db.wait_message(after_reconnect, "read")

        # --- logout through the API: clean, credentials gone, no reconnect --------------------------------
        response = await http.post("/api/sessions/acme/0/logout")
        assert response.status_code == 200, response.text
        assert response.json()["result"]["loggedOut"] is True
        out = await db.wait_status("acme", 0, "disconnected", where=lambda r: r["metadata"].get("loggedOut"))
        assert out["metadata"]["reason"] == "logged out by operator"
        assert (await sandbox.session("acme", 0))["device"]["loggedOut"] is True
        stored_session = await db.fetchrow("SELECT * FROM wwebjs_sessions WHERE company_id = 'acme'")
        assert stored_session["auth_state"] is None and stored_session["desired_state"] == "stopped"
        await asyncio.sleep(2.0)
        assert (await db.phone_status("acme", 0))["status"] == "disconnected"
        assert (await sandbox.session("acme", 0))["connected"] is False
        view = (await http.get("/api/sessions/acme/0")).json()
        assert (view["status"], view["paired"], view["desiredState"]) == ("disconnected", False, "stopped")

        # --- the live stream saw it all ----------------------------------------------------------------
        assert sse.status == 200
        seen = sse.statuses()
        for status in ("qr", "authenticated", "ready", "disconnected"):
            assert status in seen, (status, seen)
        auth = [data for kind, data in sse.events if kind == "auth_status"]
        assert any(a["authStatus"] == "qr" and a["metadata"]["qrCode"].startswith("data:image/png") for a in auth)
        assert any(a["authStatus"] == "logged_out" for a in auth)
        assert all(data.get("companyId") == "acme" for _kind, data in sse.events)
        assert wwebjs.health()["status"] == "healthy"

        # --- linked again after the logout, this time by phone number (a pairing code) ---------------
        response = await http.post("/api/sessions/acme/0/pairing-code", json={"phoneNumber": "+60123456780"})
        assert response.status_code == 200, response.text
        code = response.json()["result"]["pairingCode"]
        assert (await sandbox.session("acme", 0))["pairingCode"] == code
        await sandbox.scan("acme", 0, code=code)
        relinked = await db.wait_status("acme", 0, "ready", where=lambda r: r["last_seen"] > out["last_seen"])
        assert relinked["phone_number"] == "60123456780"
        assert (await sandbox.session("acme", 0))["device"]["loggedOut"] is False
    finally:
        await sse.stop()
        await http.aclose()


async def _true(value: bool) -> bool:
    return value


async def _delivered(sandbox: SandboxNetwork, message_id: str) -> bool:
    found = [m for m in await sandbox.messages("acme:0") if m["id"] == message_id]
    return bool(found and found[0]["delivered"])


async def test_messages_waiting_for_a_session_go_out_once_it_is_ready_not_after_their_backoff(
        stack: Stack) -> None:
    await seed_phone(stack.database_url, "patient", 0)
    sandbox, wwebjs, _api = stack.start(api=False, WWEBJS_NOT_READY_RETRY_MS="120000",
                                        WWEBJS_NOT_READY_RETRY_MAX_MS="120000")
    db = stack.db
    await db.wait_status("patient", 0, "qr")
    waiting = [await enqueue_message(stack.database_url, stack.redis_url, "patient", 0,
                                     text_payload(f"6011100000{n}", f"waiting {n}")) for n in range(3)]
    wwebjs.proc.wait_for_output(r"message \S+ deferred 120000 ms: session patient:0 not ready")
    redis = redis_client(stack.redis_url)
    try:
        async def all_delayed() -> bool:
            return int(await redis.zcard(f"bull:{WWEBJS.name}:delayed")) == len(waiting)

        await eventually(all_delayed, what="the 3 jobs delayed")
    finally:
        await redis.aclose()

    await sandbox.scan("patient", 0)
    await db.wait_status("patient", 0, "ready")
    # Well inside the 120 s they were deferred for: only the promotion on "ready" sends them now.
    for message_id in waiting:
        async def was_sent(m: str = message_id) -> bool:
            return "sent" in await db.history(m)

        await eventually(was_sent, timeout=60, what=f"message {message_id} sent")
    wwebjs.proc.wait_for_output(r"session patient:0 ready: 3 waiting job\(s\) promoted")


async def test_disconnect_loop_trips_the_breaker_until_an_operator_starts_it(stack: Stack) -> None:
    await seed_phone(stack.database_url, "flappy", 0)
    sandbox, wwebjs, api = stack.start()
    assert api is not None
    db = stack.db
    await db.wait_status("flappy", 0, "qr")
    await sandbox.scan("flappy", 0)
    await db.wait_status("flappy", 0, "ready")

    await sandbox.fault("flappy", 0, type="flap", count=20, afterMs=150)
    tripped = await db.wait_status("flappy", 0, "error", timeout=60)
    assert tripped["metadata"]["reason"].startswith("flapping: 4 disconnects")
    assert tripped["metadata"]["breaker"] == "open"
    statuses = [e["status"] for e in await db.session_events("flappy")]
    assert statuses.count("ready") == 4 and statuses.count("disconnected") == 3
    stored = await db.fetchrow("SELECT * FROM wwebjs_sessions WHERE company_id = 'flappy'")
    assert stored["breaker_tripped_at"] is not None
    connections = len((await sandbox.connections("flappy:0"))["connections"])
    await asyncio.sleep(3.0)  # no more tries while the breaker is open
    assert len((await sandbox.connections("flappy:0"))["connections"]) == connections
    assert (await db.phone_status("flappy", 0))["status"] == "error"

    async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30) as http:
        view = (await http.get("/api/sessions/flappy/0")).json()
        assert view["breaker"]["open"] is True and view["status"] == "error"
        await sandbox.fault("flappy", 0, type="clear")
        response = await http.post("/api/sessions/flappy/0/start")
        assert response.status_code == 200, response.text
    await db.wait_status("flappy", 0, "ready", timeout=30)
    stored = await db.fetchrow("SELECT * FROM wwebjs_sessions WHERE company_id = 'flappy'")
    assert stored["breaker_tripped_at"] is None
    assert len((await sandbox.connections("flappy:0"))["connections"]) == connections + 1

    # A graceful stop (SIGTERM) says so in phone_status and hands the lease back at once.
    assert wwebjs.stop() == 0
    stopped = await db.phone_status("flappy", 0)
    assert (stopped["status"], stopped["metadata"]["reason"]) == ("disconnected", "wwebjs process stopped")
    assert await db.fetch("SELECT * FROM process_leases WHERE name LIKE 'wwebjs:session:%'") == []
    assert stored["auth_state"] is not None  # credentials kept for the next start


async def test_pairing_code_session_api_commands_and_tenancy(stack: Stack) -> None:
    await seed_phone(stack.database_url, "acme", 0)
    await seed_phone(stack.database_url, "acme", 1, connection_type="meta_direct")
    await seed_phone(stack.database_url, "globex", 0)
    sandbox, _wwebjs, api = stack.start()
    assert api is not None
    db = stack.db
    key = await company_key(stack.database_url, "acme")
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=40) as http:
        await db.wait_status("acme", 0, "qr")

        # Bad input: clear 4xx problems, nothing queued.
        bad = await http.post("/api/sessions/acme/0/pairing-code", json={"phoneNumber": "12ab"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"] == "phoneNumber"
        unknown_field = await http.post("/api/sessions/acme/0/pairing-code", json={"phone": "+60123456789"})
        assert unknown_field.status_code == 422
        assert (await http.post("/api/sessions/acme/0/reboot")).status_code == 422
        assert await db.fetch("SELECT * FROM wwebjs_session_commands") == []

        # Tenancy: another company's session is "not found", a meta phone has no session.
        assert (await http.get("/api/sessions/globex/0")).status_code == 404
        assert (await http.post("/api/sessions/globex/0/logout")).status_code == 404
        assert (await http.get("/api/sessions/globex/0/qr")).status_code == 404
        assert (await http.get("/api/sessions/acme/1")).status_code == 409
        assert (await http.get("/api/sessions/acme/7")).status_code == 404
        assert (await http.get("/api/admin/sessions")).status_code == 403
        assert (await httpx.AsyncClient(base_url=api.url).get("/api/sessions/acme/0")).status_code == 401
        listed = (await http.get("/api/sessions/acme")).json()["sessions"]
        assert [(s["companyId"], s["phoneIndex"]) for s in listed] == [("acme", 0)]

        # Pairing code instead of the QR.
        response = await http.post("/api/sessions/acme/0/pairing-code", json={"phoneNumber": "+60 12-345 6789"})
        assert response.status_code == 200, response.text
        code = response.json()["result"]["pairingCode"]
        assert len(code) == 9 and code[4] == "-"
        row = await db.wait_status("acme", 0, "pairing_code")
        assert row["metadata"]["pairingCode"] == code and row["metadata"]["phoneNumber"] == "60123456789"
        assert (await sandbox.session("acme", 0))["pairingCode"] == code
        no_qr = await http.get("/api/sessions/acme/0/qr")
        assert no_qr.status_code == 404 and "pairing code" in no_qr.json()["detail"]
        with pytest.raises(httpx.HTTPStatusError):
            await sandbox.scan("acme", 0, code="AAAA-AAAA")
        await sandbox.scan("acme", 0, code=code)
        ready = await db.wait_status("acme", 0, "ready")
        assert ready["phone_number"] == "60123456789"
        again = await http.post("/api/sessions/acme/0/pairing-code", json={"phoneNumber": "+60123456789"})
        assert again.status_code == 409 and "already paired" in again.json()["detail"]

        # stop -> disconnected, nothing connected; start -> ready from the stored credentials, no QR.
        stopped = await http.post("/api/sessions/acme/0/stop")
        assert stopped.status_code == 200, stopped.text
        await db.wait_status("acme", 0, "disconnected")
        await eventually(lambda: _not_connected(sandbox, "acme"), what="the network connection closed")
        qr_events_before = [e["status"] for e in await db.session_events("acme")].count("qr")
        assert (await http.post("/api/sessions/acme/0/start")).status_code == 200
        await db.wait_status("acme", 0, "ready")
        before = await db.wait_status("acme", 0, "ready")
        connections = len((await sandbox.connections("acme:0"))["connections"])
        assert (await http.post("/api/sessions/acme/0/restart")).status_code == 200
        await db.wait_status("acme", 0, "ready", where=lambda r: r["last_seen"] > before["last_seen"])
        assert len((await sandbox.connections("acme:0"))["connections"]) == connections + 1
        assert [e["status"] for e in await db.session_events("acme")].count("qr") == qr_events_before
        view = (await http.get("/api/sessions/acme/0")).json()
        assert view["status"] == "ready" and view["paired"] and not view["stale"]

    async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30) as admin:
        everything = (await admin.get("/api/admin/sessions")).json()["sessions"]
        assert {(s["companyId"], s["phoneIndex"]) for s in everything} == {("acme", 0), ("globex", 0)}
        assert (await admin.get("/api/sessions/globex/0")).status_code == 200


async def _not_connected(sandbox: SandboxNetwork, company: str) -> bool:
    return not (await sandbox.session(company, 0))["connected"]


async def test_faults_hang_stall_slow_sends_and_memory_growth(stack: Stack) -> None:
    await seed_phone(stack.database_url, "faulty", 0)
    sandbox, wwebjs, _api = stack.start(api=False, WWEBJS_INIT_TIMEOUT_SECONDS="3",
                                        WWEBJS_BREAKER_DISCONNECTS="50")
    db = stack.db
    await db.wait_status("faulty", 0, "qr")
    await sandbox.scan("faulty", 0)
    await db.wait_status("faulty", 0, "ready")

    # A hung network answers nothing: the keepalive notices, the session reconnects once it answers.
    await sandbox.fault("faulty", 0, type="hang", seconds=5)
    down = await db.wait_status("faulty", 0, "disconnected", timeout=20,
                                where=lambda r: "keepalive timeout" in r["metadata"]["reason"])
    back = await db.wait_status("faulty", 0, "ready", timeout=40, where=lambda r: r["last_seen"] > down["last_seen"])

    # Authenticated but never ready: the watchdog restarts the session.
    await sandbox.fault("faulty", 0, type="stall", count=1)
    await sandbox.fault("faulty", 0, type="disconnect")
    stuck = await db.wait_status("faulty", 0, "disconnected", timeout=30,
                                 where=lambda r: "watchdog" in r["metadata"]["reason"])
    assert stuck["metadata"]["reason"].startswith("stuck in authenticated for 3s")
    await db.wait_status("faulty", 0, "ready", timeout=30, where=lambda r: r["last_seen"] > stuck["last_seen"])
    assert back["last_seen"] < stuck["last_seen"]

    # Slow sends, acted out inside the driver: the send takes at least the injected delay.
    await sandbox.fault("faulty", 0, type="slow_sends", delayMs=800)
    slow = await enqueue_message(stack.database_url, stack.redis_url, "faulty", 0, text_payload("60111", "slow"))
    # Wait for the last ack: "sent" lasts only until the device ack (100 ms here), too short for a poll to see.
    await db.wait_message(slow, "read")
    steps = {r["to_status"]: r["created_at"] for r in await db.fetch(
        "SELECT h.to_status, h.created_at FROM message_status_history h JOIN messages m ON m.id = h.message_pk "
        "WHERE m.message_id = $1", slow)}
    assert (steps["sent"] - steps["sending"]).total_seconds() >= 0.8

    # Memory growth inside the wwebjs process: its RSS climbs (what the orchestrator's limit watches).
    rss_before = wwebjs.health()["memory"]["rss"]
    await sandbox.fault("faulty", 0, type="memory_growth", mbPerSecond=100, maxMb=150)

    async def grown() -> int | None:
        rss = int(wwebjs.health()["memory"]["rss"])
        return rss if rss >= rss_before + (120 << 20) else None

    await eventually(grown, timeout=30, what="the wwebjs process to grow by 120 MB")
    await sandbox.fault("faulty", 0, type="clear")
    assert wwebjs.health()["status"] == "healthy"
