"""The sandbox network drops a client that went silent, as WhatsApp's servers do.

A cut-off or frozen host sends no pings; the network closes its socket once the keepalive
interval plus its timeout passed without a frame, so the session's next owner connects
without a conflict — while a client that keeps pinging stays connected.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from bisnesgpt.sandbox.wweb.protocol import WS_PATH
from tests.support.polling import eventually
from tests.support.wwebjs import start_sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_a_silent_client_is_dropped_and_a_pinging_one_is_kept(tmp_path: Path) -> None:
    sandbox = start_sandbox(tmp_path)  # keepalive: a ping every 1 s, 4 s to answer -> 5 s of silence
    url = sandbox.url.replace("http://", "ws://") + WS_PATH
    try:
        async with connect(url) as silent, connect(url) as pinging:
            for ws, session in ((silent, "quiet:0"), (pinging, "chatty:0")):
                welcome = json.loads(await ws.recv())
                assert welcome["keepalive"] == {"interval": 1.0, "timeout": 4.0}
                await ws.send(json.dumps({"type": "hello", "session": session, "auth": None,
                                          "client": {"process": "test", "pid": 1, "host": "t", "holder": session}}))
            began = time.monotonic()

            async def keep_pinging() -> None:
                n = 0
                while True:
                    n += 1
                    await pinging.send(json.dumps({"type": "ping", "n": n}))
                    await asyncio.sleep(1)

            pinger = asyncio.create_task(keep_pinging())

            async def dropped() -> dict[str, object] | None:
                [conn] = (await sandbox.connections("quiet:0"))["connections"]
                return conn if conn["closed_at"] else None

            closed = await eventually(dropped, timeout=20, what="the silent client dropped")
            assert closed["close_reason"] == "silent for 5s: dropped"
            assert time.monotonic() - began >= 4.0
            [kept] = (await sandbox.connections("chatty:0"))["connections"]
            assert kept["closed_at"] is None
            pinger.cancel()
    finally:
        sandbox.proc.kill_tree()
