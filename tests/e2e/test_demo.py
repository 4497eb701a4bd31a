"""``make demo`` in a fresh clone, then the banner's three commands: a message on each engine.

What a newcomer does, with nothing else: the demo (``bisnesgpt demo``, what ``make demo``
runs after creating ``.venv``) starts everything on the embedded default with both
sandboxes, prints a banner, and the three commands printed there deliver a message through
WhatsApp Web and through the Cloud API and list them. Ctrl-C stops every process, the
sandboxes too. A second run reuses the data, the key and the pairing; a sandbox that dies
is started again by the orchestrator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.demo import DemoRun
from tests.support.polling import wait_until
from tests.support.procs import processes_under

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]

CONTACT = "60123456789"


def _json(text: str) -> dict[str, object]:
    value = json.loads(text)
    assert isinstance(value, dict), text
    return value


def _run_banner_commands(demo: DemoRun, commands: list[str]) -> list[dict[str, object]]:
    answers = []
    for command in commands:
        done = demo.shell(command, timeout=60)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        answers.append(_json(done.stdout))
    return answers


def _delivered_on_each_engine(demo: DemoRun, answers: list[dict[str, object]], tag: str) -> None:
    web, cloud, listed = answers
    assert (web["success"], web["status"], web["process"]) == (True, "sent", "wwebjs"), web
    assert (cloud["success"], cloud["status"], cloud["process"]) == (True, "sent", "meta"), cloud
    ids = {m["messageId"] for m in listed["data"]}  # type: ignore[attr-defined]
    assert {web["messageId"], cloud["messageId"]} <= ids, listed
    # ... and the providers got them: the sandbox network and the Cloud API emulator.
    network = httpx.get(f"http://127.0.0.1:{demo.ports.network}/admin/messages", timeout=10).json()["messages"]
    assert any(m["id"] == web["externalId"] and m["direction"] == "out" for m in network), tag
    records = httpx.get(f"http://127.0.0.1:{demo.ports.emulator}/_emulator/requests",
                        params={"operation": "send"}, timeout=10).json()
    assert any(r.get("wamid") == cloud["externalId"] and r.get("http_status") == 200 for r in records), tag


@pytest.mark.timeout(480)
def test_make_demo_then_the_banners_three_commands_send_on_each_engine(tmp_path: Path) -> None:
    demo = DemoRun(tmp_path, name="first").start()
    try:
        began = time.monotonic()
        banner = demo.banner()
        print(f"\n[measured] first demo start to banner: {time.monotonic() - began:.1f}s")
        key = demo.key
        assert key.startswith("bgpt_") and key in banner
        assert oct(os.stat(tmp_path / "data" / "demo-api-key").st_mode & 0o777) == "0o600"
        for expected in (f"http://127.0.0.1:{demo.ports.api}/dashboard", f"http://127.0.0.1:{demo.ports.api}/docs",
                         "/health/all", "Ctrl-C", "logs"):
            assert expected in banner, expected
        commands = demo.try_commands(banner)
        assert len(commands) == 3, banner
        _delivered_on_each_engine(demo, _run_banner_commands(demo, commands), "first run")
        assert "(external)" not in demo.output  # the children use the embedded servers too
        assert demo.stop(signal.SIGINT) == 0, demo.output[-3000:]
    finally:
        demo.kill()
    left = processes_under(tmp_path)
    assert left == [], f"left after Ctrl-C: {[p.cmdline() for p in left]}"
    for name in ("sandbox-meta", "sandbox-wweb", "api", "wwebjs", "meta"):
        assert (tmp_path / "logs" / f"{name}-out.log").exists(), name

    second = DemoRun(tmp_path, demo.ports, name="second").start()
    try:
        began = time.monotonic()
        banner = second.banner()
        print(f"[measured] second demo start to banner: {time.monotonic() - began:.1f}s")
        assert second.key == key and key in banner  # the same key, shown again
        assert "applying 0001" not in second.output and "created company" not in second.output
        assert "paired phone" not in second.output  # resumed with the stored credentials
        _delivered_on_each_engine(second, _run_banner_commands(second, second.try_commands(banner)), "second run")

        _errors_say_what_to_do(second)

        # A sandbox that dies is started again by the orchestrator, and serves again.
        old = second.helper_pid("sandbox-wweb")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: (second.helper_pid("sandbox-wweb") or old) != old, timeout=30, what="sandbox restarted")
        second.proc.wait_for_output(r"sandbox-wweb \(pid \d+\) serving on", timeout=30)  # type: ignore[union-attr]
        assert re.search(r"sandbox-wweb \(pid \d+\) died: signal SIGKILL", second.output)
        assert second.stop(signal.SIGTERM) == 0
    finally:
        second.kill()
    assert processes_under(tmp_path) == []


def _errors_say_what_to_do(demo: DemoRun) -> None:
    """Through the real API: the sandbox's not-on-WhatsApp numbers are reachable and fail with a
    detail; invalid JSON names the body; a number without its country code says to give it."""
    api = f"http://127.0.0.1:{demo.ports.api}"
    auth = {"Authorization": f"Bearer {demo.key}"}
    with httpx.Client(base_url=api, headers=auth, timeout=30) as client:
        nobody = client.post("/api/v2/messages/text/demo/60123456404?wait=10", json={"message": "hi", "phoneIndex": 0})
        assert nobody.status_code == 200, nobody.text
        answer = nobody.json()
        assert (answer["status"], answer["error"]["code"]) == ("failed", "RECIPIENT_NOT_ON_WHATSAPP"), answer
        failed = client.get(f"/api/v1/messages/{answer['messageId']}").json()
        assert "check the number" in failed["error"]["details"]["detail"], failed["error"]
        broken = client.post("/api/v2/messages/text/demo/60123456789", content=b'{"message": hi, "phoneIndex": 0}',
                             headers={"Content-Type": "application/json"})
        assert broken.status_code == 422 and [e["field"] for e in broken.json()["errors"]] == ["body"], broken.text
        national = client.post("/api/v2/messages/text/demo/0123456789", json={"message": "hi", "phoneIndex": 0})
        assert national.status_code == 422 and "country code" in national.json()["detail"], national.text
