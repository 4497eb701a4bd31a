"""The sandbox network's behaviour, in-process (sockets are recorders; records in memory)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.sandbox.wweb.network import Network, NetworkConfig, NetworkError
from bisnesgpt.sandbox.wweb.records import Records

pytestmark = pytest.mark.unit


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed = False

    async def send_json(self, data: Any) -> None:
        if self.closed:
            raise RuntimeError("closed")
        self.frames.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = True

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


@pytest.fixture
def network(tmp_path: Path) -> Network:
    config = NetworkConfig(qr_delay_ms=1, auth_delay_ms=1, ready_delay_ms=1, ack_server_ms=1, ack_device_ms=2,
                           ack_read_ms=3)
    return Network(Records(None), config, tmp_path / "media")


async def settle(condition: Any, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def connect(network: Network, session: str, auth: dict[str, Any] | None = None,
                  pid: int = 1) -> tuple[Any, FakeSocket]:
    socket = FakeSocket()
    conn = network.connect(socket, "test")
    await network.hello(conn, {"type": "hello", "session": session, "auth": auth,
                               "client": {"pid": pid, "holder": f"wwebjs@host:{pid}:x"}})
    return conn, socket


async def pair(network: Network, session: str) -> tuple[Any, FakeSocket, dict[str, Any]]:
    conn, socket = await connect(network, session)
    await settle(lambda: socket.of("qr"))
    await network.scan(session, phone="60123456789")
    await settle(lambda: socket.of("ready"))
    return conn, socket, socket.of("pair_success")[0]["auth"]


async def test_pairing_by_qr_then_resume_with_the_credentials(network: Network) -> None:
    conn, socket, auth = await pair(network, "acme:0")
    assert socket.of("qr")[0]["code"].startswith("2@")
    assert socket.of("ready")[0]["phone"] == "60123456789"
    network.closed(conn, "client closed")
    _conn2, socket2 = await connect(network, "acme:0", auth)
    await settle(lambda: socket2.of("ready"))
    assert socket2.of("authenticated")[0]["deviceId"] == auth["deviceId"]
    assert not socket2.of("qr")
    # Wrong credentials are logged out; scanning needs someone waiting.
    _conn3, socket3 = await connect(network, "acme:1", {"deviceId": auth["deviceId"], "secret": "nope"})
    assert socket3.of("logged_out") and socket3.closed
    with pytest.raises(NetworkError, match="not waiting to be paired"):
        await network.scan("acme:0")


async def test_sends_are_recorded_acked_and_deduplicated(network: Network) -> None:
    conn, socket, _auth = await pair(network, "acme:0")
    send = {"type": "send", "ref": 1, "message": {"id": "3EB0AAA", "to": "60111@c.us", "kind": "text", "text": "x"}}
    await network.frame(conn, send)
    await settle(lambda: len(socket.of("ack")) == 3)
    assert socket.of("send_result")[0] == {**socket.of("send_result")[0], "id": "3EB0AAA", "duplicate": False}
    assert [a["level"] for a in socket.of("ack")] == ["server", "device", "read"]
    stamps = [a["timestamp"] for a in socket.of("ack")]  # when each receipt happened, as WhatsApp says
    assert stamps == sorted(stamps) and time.time() - 60 < stamps[0] <= time.time()
    await network.frame(conn, {**send, "ref": 2})
    await settle(lambda: len(socket.of("send_result")) == 2)
    assert socket.of("send_result")[1]["duplicate"] is True
    recorded = network.records.message("acme:0", "3EB0AAA")
    assert recorded is not None and recorded["received_count"] == 2 and recorded["ack"] == 3
    await network.frame(conn, {"type": "send", "ref": 3, "message": {"to": "0123456789@c.us", "kind": "text"}})
    await network.frame(conn, {"type": "send", "ref": 4, "message": {"to": "60111@c.us", "kind": "image",
                                                                      "media": {"handle": "missing"}}})
    await settle(lambda: len(socket.of("send_result")) == 4)
    assert [r.get("error", {}).get("code") for r in socket.of("send_result")[2:]] == ["not-on-whatsapp",
                                                                                      "media-missing"]


async def test_unconfirmed_acks_and_inbound_are_replayed_after_a_reconnect(network: Network) -> None:
    conn, socket, auth = await pair(network, "acme:0")
    await network.frame(conn, {"type": "send", "ref": 1, "message": {"id": "3EB0B", "to": "60111@c.us",
                                                                      "kind": "text", "text": "x"}})
    await settle(lambda: len(socket.of("ack")) == 3)
    network.closed(conn, "gone")
    injected = await network.inject("acme:0", {"from": "60199", "text": "while you were away"})
    assert injected["pushed"] is False
    conn2, socket2 = await connect(network, "acme:0", auth)
    await settle(lambda: socket2.of("message"))
    assert socket2.of("ack") == [{"type": "ack", "id": "3EB0B", "level": "read"}]
    assert socket2.of("message")[0]["message"]["text"] == "while you were away"
    await network.frame(conn2, {"type": "ack_received", "acks": [{"id": "3EB0B", "level": "read"}]})
    await network.frame(conn2, {"type": "receipt", "ids": [injected["id"]]})
    network.closed(conn2, "gone")
    _conn3, socket3 = await connect(network, "acme:0", auth)
    await settle(lambda: socket3.of("ready"))
    await asyncio.sleep(0.05)
    assert not socket3.of("ack") and not socket3.of("message")


async def test_a_second_connection_replaces_the_first_and_is_flagged(network: Network) -> None:
    _conn, socket, auth = await pair(network, "acme:0")
    _conn2, socket2 = await connect(network, "acme:0", auth, pid=2)  # another process: a violation
    assert socket.closed and "replaced" in socket.of("disconnect")[0]["reason"]
    await settle(lambda: socket2.of("ready"))
    _conn3, socket3 = await connect(network, "acme:0", auth, pid=2)  # the same client, stale socket
    assert socket2.closed
    await settle(lambda: socket3.of("ready"))
    connections = network.records.connections("acme:0")
    assert [c["overlapped"] for c in connections] == [0, 1, 0]


async def test_faults(network: Network) -> None:
    conn, socket, _auth = await pair(network, "acme:0")
    await network.fault("acme:0", {"type": "slow_sends", "delayMs": 100})
    assert socket.of("fault")[-1] == {"type": "fault", "fault": "slow_sends", "delayMs": 100}
    await network.fault("acme:0", {"type": "hang", "seconds": 0.3})
    ping = asyncio.create_task(network.frame(conn, {"type": "ping", "n": 1}))
    await network.inject("acme:0", {"from": "60199", "text": "during the hang"})
    await asyncio.sleep(0.15)
    assert not socket.of("pong") and not socket.of("message")  # a hung network is silent
    await ping
    await settle(lambda: socket.of("message"))
    assert socket.of("pong") == [{"type": "pong", "n": 1}]  # answered once it recovered, nothing lost
    await network.fault("acme:0", {"type": "logout"})
    assert socket.of("logged_out") and socket.closed
    device = network.records.device("acme:0")
    assert device is not None and device["logged_out_at"] is not None
    with pytest.raises(NetworkError, match="unknown fault"):
        await network.fault("acme:0", {"type": "meteor"})
