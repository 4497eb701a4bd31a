"""Smoke test of the embedded default: `bisnesgpt start` with nothing configured.

Brings up embedded PostgreSQL + Valkey, migrates, serves every role's /health and prints
the ready banner; the children call the servers embedded, and every log-file line has one
timestamp; Ctrl-C leaves no process behind; a second start reuses ./data with the data intact.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import asyncpg
import pytest

from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port, http_ok, processes_under

pytestmark = pytest.mark.e2e


def _start(workdir: Path, ports: dict[str, int], name: str) -> Proc:
    env = clean_env(API_PORT=str(ports["api"]), WWEBJS_PORT=str(ports["wwebjs"]), META_PORT=str(ports["meta"]),
                    HOST="127.0.0.1", HEARTBEAT_INTERVAL="1000")
    return Proc(["start"], cwd=workdir, env=env, log_name=name)


@pytest.mark.timeout(240)
def test_start_on_the_embedded_default(tmp_path: Path) -> None:
    ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port()}
    first = _start(tmp_path, ports, "first")
    try:
        for role, port in ports.items():
            wait_until(lambda port=port: http_ok(f"http://127.0.0.1:{port}/health"), timeout=90,
                       what=f"{role} /health 200")
        url = first.wait_for_output(r"PostgreSQL: (postgresql://\S+) \(embedded\)").group(1)
        first.wait_for_output(r"Redis: (redis://\S+) \(embedded\)")
        # Once everything is ready, a banner says where to go, where the logs are and how to stop.
        banner = first.wait_for_output(r"(?s)bisnesgpt is ready: api, wwebjs, meta\n.*?\n={78}").group(0)
        api = f"http://127.0.0.1:{ports['api']}"
        for expected in (f"{api}/api", f"{api}/docs", f"{api}/dashboard", f"{api}/health/all",
                         f"{tmp_path / 'logs'}/<role>-out.log", "Ctrl-C", f"kill -TERM {first.pid}"):
            assert expected in banner, (expected, banner)
        # The children use the embedded servers the orchestrator started: never "(external)".
        assert "(external)" not in first.output()

        async def write() -> None:
            conn = await asyncpg.connect(url)
            await conn.execute("INSERT INTO companies (id, name) VALUES ('kept', 'Kept Ltd')")
            await conn.close()

        asyncio.run(write())
        assert first.popen.poll() is None
        first.signal(signal.SIGINT)
        assert first.wait(60) == 0
    finally:
        first.kill_tree()
    leftovers = processes_under(tmp_path)
    assert leftovers == [], f"stray processes after Ctrl-C: {[p.cmdline() for p in leftovers]}"
    logged = (tmp_path / "logs" / "api-out.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ api\[\d+\] INFO .*PostgreSQL: .* \(embedded\)$", logged, re.M)
    # One timestamp per line: the orchestrator does not date a line the child's logging dated.
    assert not re.search(r"^\S+ \d{4}-\d\d-\d\dT\d\d:\d\d", logged, re.M), logged[:500]

    second = _start(tmp_path, ports, "second")
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{ports['api']}/health"), timeout=90, what="api /health")
        url = second.wait_for_output(r"PostgreSQL: (postgresql://\S+) \(embedded\)").group(1)

        async def read() -> str | None:
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval("SELECT name FROM companies WHERE id = 'kept'")
            finally:
                await conn.close()

        assert asyncio.run(read()) == "Kept Ltd"
        assert "applying 0001" not in second.output()
        second.signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        second.kill_tree()
    assert processes_under(tmp_path) == []
