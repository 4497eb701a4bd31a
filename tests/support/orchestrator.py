"""Running the real orchestrator (``bisnesgpt start``) in tests, with short timings.

``OrchestratorRun`` spawns it in a temporary working directory against the test's own
database and Redis db, finds its children by their ``PROCESS_NAME``/``INSTANCE_ID``
environment, reads ``process_events``/``process_health`` and always cleans up: the whole
process tree is killed if a test fails midway, and ``assert_nothing_left`` proves no
process survived.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port, processes_under

ENCRYPTION_KEY = "5e" * 32

# Short timings so supervision is observable in seconds (never asserted as performance).
FAST_TIMINGS: dict[str, str] = {
    "HEARTBEAT_INTERVAL": "500",
    "MAX_HEARTBEAT_AGE": "5000",
    "SHUTDOWN_TIMEOUT": "3",
    "API_RESTART_DELAY": "400",
    "WWEBJS_RESTART_DELAY": "600",
    "META_RESTART_DELAY": "500",
    "RESTART_DELAY_MAX": "5000",
    "API_MIN_UPTIME": "1500",
    "WWEBJS_MIN_UPTIME": "1500",
    "META_MIN_UPTIME": "1500",
    "MEMORY_CHECK_INTERVAL": "300",
    "CHILD_START_TIMEOUT": "60000",
}


def query(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one query from synchronous test code."""

    async def _run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(_run())


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def get_json(url: str, timeout: float = 3.0) -> tuple[int | None, dict[str, Any]]:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None, {}
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


class OrchestratorRun:
    """One ``bisnesgpt start`` under test."""

    def __init__(self, workdir: Path, *, database_url: str, redis_url: str, **env: str) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.redis_url = redis_url
        self.ports = {"api": free_port(), "wwebjs": free_port(), "meta": free_port()}
        self.env = clean_env(
            DATABASE_URL=database_url, REDIS_URL=redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY, HOST="127.0.0.1",
            API_PORT=str(self.ports["api"]), WWEBJS_PORT=str(self.ports["wwebjs"]),
            META_PORT=str(self.ports["meta"]), **FAST_TIMINGS,
        )
        self.env.update(env)
        self.proc: Proc | None = None
        self.started_at = 0.0

    # --- life -------------------------------------------------------------------------------

    def start(self) -> OrchestratorRun:
        self.started_at = time.monotonic()
        self.proc = Proc(["start"], cwd=self.workdir, env=self.env, log_name="orchestrator")
        return self

    def __enter__(self) -> OrchestratorRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.proc.output() if self.proc else ""

    def cleanup(self) -> None:
        """Kill whatever is left (a failed test), then reap."""
        if self.proc is None:
            return
        procs = []
        try:
            procs = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        procs += processes_under(self.workdir)
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        self.proc.kill_tree()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """Signal the orchestrator; (exit status, seconds until it exited)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - began

    def assert_nothing_left(self, timeout: float = 15) -> None:
        """No process of this run survives (children, grandchildren, anything in workdir)."""
        def _clear() -> bool:
            return not [p for p in processes_under(self.workdir) if _alive(p)]

        try:
            wait_until(_clear, timeout=timeout, what="every process of the run to exit")
        except AssertionError:
            left = [(p.pid, " ".join(p.cmdline())) for p in processes_under(self.workdir) if _alive(p)]
            raise AssertionError(f"processes left behind: {left}") from None

    # --- children ---------------------------------------------------------------------------

    def children(self) -> dict[str, psutil.Process]:
        """Live children by process name (``api``, ``api-1``, ``wwebjs``, ``meta``…)."""
        found: dict[str, psutil.Process] = {}
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return found
        for kid in kids:
            try:
                if kid.status() == psutil.STATUS_ZOMBIE:
                    continue
                env = kid.environ()
            except psutil.Error:
                continue
            role, instance = env.get("PROCESS_NAME"), int(env.get("INSTANCE_ID", "0"))
            if role:
                found[role if instance == 0 else f"{role}-{instance}"] = kid
        return found

    def pid_of(self, name: str) -> int | None:
        child = self.children().get(name)
        return child.pid if child else None

    def url(self, role: str, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.ports[role]}{path}"

    def wait_healthy(self, names: list[str], timeout: float = 90) -> dict[str, Any]:
        """Until /health/all is 200 with exactly these expected processes healthy."""
        last: dict[str, Any] = {}

        def _ok() -> bool:
            nonlocal last
            if self.proc is not None and self.proc.popen.poll() is not None:
                raise AssertionError(f"orchestrator exited early:\n{self.output()[-4000:]}")
            code, last = get_json(self.url("api", "/health/all"))
            healthy = {p["processName"] for p in last.get("processes", [])
                       if p.get("expected") and p.get("status") == "healthy"}
            return code == 200 and healthy == set(names) and set(self.children()) == set(names)

        try:
            wait_until(_ok, timeout=timeout, interval=0.2, what=f"{names} healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast /health/all: {json.dumps(last)[:3000]}\n"
                                 f"output:\n{self.output()[-4000:]}") from None
        return last

    def events(self, process_name: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
        return query(self.database_url, """
            SELECT id, process_name, event_type, event_data, severity, timestamp FROM process_events
            WHERE ($1::text IS NULL OR process_name = $1) AND ($2::text IS NULL OR event_type = $2)
            ORDER BY id""", process_name, event_type)

    def wait_event(self, process_name: str, event_type: str, count: int = 1, timeout: float = 60) -> list[
            dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def _seen() -> bool:
            nonlocal found
            found = self.events(process_name, event_type)
            return len(found) >= count

        try:
            wait_until(_seen, timeout=timeout, interval=0.2, what=f"{count} {event_type} event(s) of {process_name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; events: {[(e['process_name'], e['event_type']) for e in self.events()]}"
                                 f"\noutput:\n{self.output()[-3000:]}") from None
        return found


def bisnesgpt(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[
        str]:
    """Run a short ``bisnesgpt`` command to completion."""
    return subprocess.run([sys.executable, "-m", "bisnesgpt", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
