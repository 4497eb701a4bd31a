"""What the benchmarks run against: servers, databases, spawned processes, measurements.

PostgreSQL and Redis: ``BENCH_DATABASE_URL`` / ``BENCH_REDIS_URL`` (else ``TEST_DATABASE_URL``
/ ``TEST_REDIS_URL``, else embedded servers in the run's work directory). Each scenario gets
a fresh migrated database and a leased Redis logical database (1..15, flushed), so a
benchmark never touches another run's data. Processes are the product's own
(``python -m bisnesgpt …``) and the test support's spawners; everything spawned is killed
at the end, also when a scenario fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil
from tests.support.procs import clean_env, free_port
from tests.support.servers import redis_database, with_database

from bisnesgpt.db.migrate import migrate

REPO = Path(__file__).resolve().parents[1]


# --- servers and databases --------------------------------------------------------------------


@dataclass
class Servers:
    postgres_url: str  # maintenance database: CREATE DATABASE allowed
    redis_url: str
    source: str  # "environment" | "embedded"
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        self._stack.close()


def open_servers(workdir: Path) -> Servers:
    pg = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    rd = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    stack = contextlib.ExitStack()
    source = "environment"
    if not pg:
        from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres

        server = EmbeddedPostgres(workdir / "pg", database="postgres")
        pg = server.ensure().url
        stack.callback(server.stop)
        source = "embedded"
    if not rd:
        from bisnesgpt.infra.embedded_redis import EmbeddedRedis

        redis_server = EmbeddedRedis(workdir / "redis")
        rd = redis_server.ensure().url
        stack.callback(redis_server.stop)
        source = "embedded"
    return Servers(pg, rd, source, stack)


async def _create_database(server_url: str) -> str:
    name = f"bgpt_bench_{secrets.token_hex(5)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(server_url, name)
    await migrate(url)
    return url


async def _drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def scenario_storage(servers: Servers) -> Iterator[tuple[str, str]]:
    """(database_url, redis_url): a fresh migrated database and a leased, flushed Redis db."""
    database_url = asyncio.run(_create_database(servers.postgres_url))
    try:
        with redis_database(servers.redis_url) as redis_url:
            yield database_url, redis_url
    finally:
        asyncio.run(_drop_database(servers.postgres_url, database_url))


def run_sql(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def _run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(_run())


# --- processes --------------------------------------------------------------------------------


class Spawned:
    """One spawned process (own session, output in a log file), killed with its tree on close."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], log_name: str) -> None:
        self.log_path = cwd / f"{log_name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._log.close()


def bisnesgpt_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "bisnesgpt", *args]


def wait_for(predicate: Any, *, timeout: float, interval: float = 0.05, what: str = "", proc: Spawned | None = None
             ) -> float:
    """Poll until true; seconds it took. Fails early (with its output) if ``proc`` exits."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited early:\n{proc.output()[-3000:]}")
        if time.monotonic() - start > timeout:
            detail = f"\n{proc.output()[-3000:]}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def http_json(url: str, timeout: float = 2.0) -> tuple[int | None, Any]:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None, None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


# --- measurements -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "p99.9": percentile(values, 99.9),
            "max": max(values) if values else None}


def rss_mb(pid: int, *, with_children: bool = False) -> float | None:
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        if with_children:
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        return total / 2**20
    except psutil.Error:
        return None


def listener_pid(url: str) -> int | None:
    """The local process listening on the URL's port (a server given by the environment)."""
    port = urlsplit(url).port
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


def postgres_pids(server_url: str, database_url: str) -> list[int]:
    """The postmaster, its background processes and the backends of ``database_url`` only
    (a shared server also serves other databases, whose CPU is not ours)."""
    root = listener_pid(server_url)
    if root is None:
        return []
    database = urlsplit(database_url).path.lstrip("/")
    pids = [root]
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(root).children():
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(child.cmdline())
                if f" {database} " in cmdline or "(" not in cmdline:  # our backends, or auxiliary processes
                    pids.append(child.pid)
    return pids


PidSource = int | list[int] | Callable[[], list[int]]


def storage_pids(servers: Servers, database_url: str) -> dict[str, PidSource]:
    """CPU groups for PostgreSQL (this database's backends + auxiliaries) and Redis, when local."""
    out: dict[str, PidSource] = {"postgres": lambda: postgres_pids(servers.postgres_url, database_url)}
    redis_pid = listener_pid(servers.redis_url)
    if redis_pid is not None:
        out["redis"] = redis_pid
    return out


class CpuMeter:
    """CPU used by named processes between start() and stop(), in cores (1.0 = one full core).

    A group given as a callable is resolved at start and again at stop: a process that
    appeared in between (a new database backend) counts with all of its CPU time.
    """

    def __init__(self, pids: dict[str, PidSource]) -> None:
        self.sources = pids
        self._start: dict[int, float] = {}
        self._t0 = 0.0
        self._busy0 = 0.0

    @staticmethod
    def _resolve(source: PidSource) -> list[int]:
        if isinstance(source, int):
            return [source]
        return list(source) if isinstance(source, list) else source()

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            times = psutil.Process(pid).cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return None

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._start = {pid: c for source in self.sources.values() for pid in self._resolve(source)
                       if (c := self._cpu(pid)) is not None}
        return self

    def stop(self) -> dict[str, float]:
        wall = max(1e-6, time.monotonic() - self._t0)
        out = {}
        for name, source in self.sources.items():
            used = []
            for pid in set(self._resolve(source)):
                now = self._cpu(pid)
                if now is None:
                    continue
                if pid in self._start:
                    used.append(now - self._start[pid])
                elif callable(source):
                    used.append(now)
            if used:
                out[name] = round(sum(used) / wall, 3)
        # Everything else the machine did meanwhile (the generator included): the noise gauge.
        out["machine"] = round((self._busy() - self._busy0) / wall, 3)
        return out


class RssSampler:
    """Peak RSS of named processes, sampled in a thread while a load runs."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        import threading

        self.pids = pids
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                value = rss_mb(pid)
                if value is not None:
                    self.peak[name] = max(self.peak.get(name, 0.0), value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- the load generator, in its own process -------------------------------------------------------


@dataclass
class LoadRun:
    """One load generator run, summarised."""

    mode: str  # closed | open
    offered_rate: float | None
    connections: int
    duration: float
    requests: int
    errors: int
    statuses: dict[str, int]
    throughput: float
    latency_ms: dict[str, float | None]
    generator_cores: float
    started_at: float
    server_cores: dict[str, float] = field(default_factory=dict)
    latency_by_status_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def run_load(url: str, shapes: list[dict[str, Any]], *, connections: int, duration: float, warmup: float = 1.0,
             rate: float = 0.0, cpu_pids: dict[str, PidSource] | None = None, workdir: Path | None = None) -> LoadRun:
    """Run ``bench.loadgen`` in a separate process; CPU of ``cpu_pids`` measured meanwhile."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=workdir, delete=False) as handle:
        json.dump(shapes, handle)
        shapes_file = handle.name
    args = [sys.executable, "-m", "bench.loadgen", url, "--requests-file", shapes_file,
            "--connections", str(connections), "--duration", str(duration), "--warmup", str(warmup)]
    if rate > 0:
        args += ["--rate", str(rate)]
    env = clean_env()
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    meter: CpuMeter | None = None
    try:
        if cpu_pids:
            time.sleep(warmup if rate <= 0 else 0.0)
            meter = CpuMeter(cpu_pids).start()
        out, err = proc.communicate(timeout=duration + warmup + 120)
        cores = meter.stop() if meter is not None else {}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(shapes_file)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err[-3000:]}")
    data = json.loads(out)
    lat = data["latencies_ms"]
    measured = data["duration"] or duration
    return LoadRun(
        mode="open" if rate > 0 else "closed", offered_rate=rate or None, connections=connections,
        duration=round(measured, 3), requests=data["requests"], errors=data["errors"], statuses=data["statuses"],
        throughput=round(data["requests"] / measured, 1), latency_ms=latency_summary(lat),
        generator_cores=round(data["generator_cpu_seconds"] / measured, 3), started_at=data["started_at"],
        server_cores=cores,
        latency_by_status_ms={k: latency_summary(v) for k, v in data.get("latencies_by_status", {}).items()},
    )


# --- the machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        version = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10, check=False)
        node = version.stdout.strip() or None
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "node": node,
            "platform": platform.platform(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


__all__ = [
    "REPO",
    "CpuMeter",
    "LoadRun",
    "RssSampler",
    "Servers",
    "Spawned",
    "bisnesgpt_args",
    "clean_env",
    "free_port",
    "http_json",
    "http_status",
    "latency_summary",
    "listener_pid",
    "machine_info",
    "open_servers",
    "percentile",
    "postgres_pids",
    "rss_mb",
    "run_load",
    "run_sql",
    "scenario_storage",
    "storage_pids",
    "wait_for",
]
