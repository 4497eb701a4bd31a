"""The admission gate in front of an app: sends past the in-flight limit are refused before
anything reads them; reads under the same paths and other routes are never refused."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from bisnesgpt.api.admission import AdmissionGate, LoopLag, SendAdmission

pytestmark = pytest.mark.unit


class HeldApp:
    """An app that answers 202 once released, recording the bodies it read."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered += 1
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await self.release.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def test_sends_past_the_limit_are_refused_unread_and_the_slot_is_freed_after_the_answer() -> None:
    app = HeldApp()
    admission = SendAdmission(0.0, LoopLag(), max_in_flight=1)
    transport = httpx.ASGITransport(app=AdmissionGate(app, admission))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = asyncio.create_task(client.post("/api/v2/messages/text/co/601", json={"message": "a"}))
        while app.entered < 1:
            await asyncio.sleep(0.01)
        assert admission.in_flight == 1
        refused = await client.post("/api/v2/messages/text/co/601", json={"message": "b"})
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.headers["retry-after"] == "1"
        problem = refused.json()
        assert problem["type"].endswith("overloaded") and "ADMISSION_MAX_IN_FLIGHT" in problem["detail"]
        assert app.bodies == [b'{"message":"a"}']  # the refused body was never handed on
        app.release.set()
        assert (await first).status_code == 202
        assert admission.in_flight == 0 and admission.refused == 1
        # The slot is free again: the next send is admitted.
        assert (await client.delete("/api/v2/messages/co/601/m1")).status_code == 202


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/messages"), ("GET", "/api/v1/messages/m1"), ("POST", "/api/whatsapp/config/co/0"),
    ("GET", "/health"),
])
async def test_what_is_not_a_send_passes_a_full_gate(method: str, path: str) -> None:
    app = HeldApp()
    app.release.set()
    admission = SendAdmission(0.0, LoopLag(), max_in_flight=1)
    admission.in_flight = 1  # full: a send would be refused
    transport = httpx.ASGITransport(app=AdmissionGate(app, admission))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.request(method, path)).status_code == 202
    assert admission.refused == 0
