"""The chaos harness: one whole system, a load generator, a Jepsen-style checker.

A scenario is three steps around its fault::

    with ChaosSystem(tmp_path, database_url=..., redis_url=...) as system:   # 1. the system
        with LoadGenerator(system, meta_rate=..., wwebjs_rate=...) as load:    # 2. load through the API
            load.wait_acked(20)
            fault = system.kill9("meta")                # records the jobs in flight at the fault
            system.wait_respawned(fault)
            ...
        result = check(system, load, scenario="kill -9 meta")               # 3. the checker
        result.assert_ok()                                                 # + prints the summary line

``ChaosSystem`` (a context manager) starts, in its ``workdir``:

* the Cloud API emulator (``bisnesgpt sandbox meta``) with one phone, status webhooks going
  to the meta process (``/webhook/meta``, signed), pacing relaxed so it does not dominate;
* the sandbox WhatsApp-Web network (``bisnesgpt sandbox wweb serve``);
* ``bisnesgpt start`` (``OrchestratorRun``, FAST_TIMINGS) with api (``api_instances``), wwebjs
  (sandbox driver) and meta (``meta_instances``), against ``database_url``/``redis_url``;
  pass URLs of servers the scenario owns (``tests.support.servers.postgres_server`` does NOT
  start one when TEST_DATABASE_URL is set: use ``EmbeddedPostgres``/``EmbeddedRedis`` in the
  scenario's tmp dir) when the scenario kills PostgreSQL or Redis;
* two tenants: ``system.meta`` (company ``chaos-meta``, phone 0 = meta_direct, 24 h windows
  open with every contact) and ``system.web`` (company ``chaos-web``, phone 0 = wwebjs, paired
  through the sandbox's scan), each with its own API key.

The database is expected to be migrated already (the ``database_url`` fixture is; for a
fresh server call ``bisnesgpt.db.migrate.migrate`` first).

``LoadGenerator`` POSTs ``/api/v2/messages/text/{company}/{contact}`` through one keep-alive
``httpx.AsyncClient`` (both tenants), open loop at ``meta_rate``/``wwebjs_rate`` messages/s,
from a thread of its own (so the scenario's code stays synchronous). Every send carries an
``Idempotency-Key``; a connection error, timeout, 409 (key still in flight), 429 or 5xx is
retried with the SAME key until it gets a 2xx (or ``give_up_after`` seconds). The body of
every message carries its key, so the emulator's record can be matched back to it.

``check`` waits until every acknowledged message is final in the database, then classifies
each one (and anything else the providers or the database saw) as delivered / lost /
duplicated / unexpected — see ``CheckResult``. Duplicates are bounded by the distinct jobs
in flight at the faults (``Fault.in_flight_ids``: messages in 'sending' + active send jobs,
sampled around the fault by ``ChaosSystem.kill9``/``record_fault``).

The orchestrator runs in ``system.run_dir`` (its ``logs/``; the emulator and sandbox live
beside it, so ``OrchestratorRun.assert_nothing_left`` only sees its own tree).
``system.stop_orchestrator()`` (SIGTERM, waits) then ``system.start_orchestrator()`` restarts
it on the same ports, env and data; ``system.run`` is always the current ``OrchestratorRun``.

``CHAOS_SCALE`` (env, default 1.0; ``.ci/run`` uses less) scales load and fault durations:
use ``scaled(full, minimum)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bisnesgpt.core.service_urls import writable_target
from tests.support.meta import APP_SECRET, ENCRYPTION_KEY, EmulatorProc
from tests.support.orchestrator import OrchestratorRun, get_json, query
from tests.support.polling import wait_until
from tests.support.sentinel import sync_redis
from tests.support.wwebjs import FAST_WWEBJS_ENV, SandboxNetwork, start_sandbox

CHAOS_SCALE = float(os.environ.get("CHAOS_SCALE", "1.0") or "1.0")

META_COMPANY = "chaos-meta"
WEB_COMPANY = "chaos-web"
META_PHONE_NUMBER_ID = "730000000000001"
META_TOKEN = "chaos-access-token"
META_DISPLAY = "15550001111"
WEB_PHONE = "60190000001"
CONTACTS = tuple(f"60177{n:06d}" for n in range(16))
OK_STATUSES = frozenset({"sent", "delivered", "read"})
FINAL_STATUSES = frozenset({"sent", "delivered", "read", "failed", "cancelled"})
SEND_QUEUES = ("meta-messages", "wwebjs-messages")

# Meta pacing relaxed so a steady chaos load is never throttled: per phone 200/s, no pair
# interval (the product's default is one message per 6 s to a recipient).
META_PACING_ENV = {
    "META_MAX_MESSAGES_PER_SECOND": "500",
    "META_PHONE_MESSAGES_PER_SECOND": "200",
    "META_PAIR_INTERVAL_MS": "0",
}
EMULATOR_ARGS = ["--messages-per-second", "1000", "--pair-interval-ms", "0"]
# The machine's PostgreSQL (max_connections 100) is shared with other test runs: smaller
# pools than the product's defaults (20/10/20), still more than this modest load needs.
POOL_ENV = {"DATABASE_POOL_API_MAX": "8", "DATABASE_POOL_META_MAX": "8", "DATABASE_POOL_WWEBJS_MAX": "5"}
# Orchestrated processes: the sandbox driver with the wwebjs tests' fast timings (the
# orchestrator's FAST_TIMINGS decide the heartbeat).
WWEBJS_ENV = {k: v for k, v in FAST_WWEBJS_ENV.items() if k != "HEARTBEAT_INTERVAL"} | {"WWEBJS_DRIVER": "sandbox"}


def scaled(full: float, minimum: float = 0.0) -> float:
    """``full`` at CHAOS_SCALE 1.0, proportionally less at reduced scale, never below ``minimum``."""
    return max(minimum, full * CHAOS_SCALE)


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the system ---------------------------------------------------------------------------------


@dataclass
class Tenant:
    """One company the load generator sends as."""

    kind: str  # "meta" | "wwebjs": the queue/provider its phone 0 goes through
    company_id: str
    api_key: str
    phone_index: int = 0
    contacts: tuple[str, ...] = CONTACTS

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Fault:
    """One injected fault: what, when, and how much work was in flight at that moment."""

    kind: str  # e.g. "kill9", "pg_terminate", "memory", "sigterm"
    target: str  # process name ("meta", "api-1", "wwebjs"…) or server
    at: float  # time.monotonic()
    wall: float  # time.time(): compare with the emulator's/sandbox's record timestamps
    pid: int | None = None
    # Jobs that may be re-run because of this fault: messages in 'sending' plus jobs in the
    # send queues' active lists (job id = message id), sampled just before and just after it.
    in_flight: int = 0
    in_flight_ids: set[str] = field(default_factory=set)
    detail: dict[str, Any] = field(default_factory=dict)
    recovered_s: float | None = None  # filled by ChaosSystem.wait_respawned / the scenario


class ChaosSystem:
    """Emulator + sandbox + ``bisnesgpt start`` + two tenants; see the module docstring.

    Attributes a scenario uses: ``run`` (the current ``OrchestratorRun``: ``children()``,
    ``pid_of``, ``stop``, ``events``, ``wait_event``, ``url``), ``emulator``, ``sandbox``,
    ``meta``/``web`` (``Tenant``), ``api_url``, ``faults`` (every recorded ``Fault``),
    ``database_url``, ``redis_url``, ``expected`` (the process names ``wait_healthy`` waits for).
    """

    def __init__(self, workdir: Path, *, database_url: str, redis_url: str, api_instances: int = 1,
                 meta_instances: int = 1, env: dict[str, str] | None = None, status_webhooks: bool = True,
                 pair_timeout: float = 90) -> None:
        self.workdir = workdir
        # The orchestrator's own directory (its logs/, its processes' cwd): kept apart from the
        # emulator and sandbox so OrchestratorRun.assert_nothing_left/cleanup only see its tree.
        self.run_dir = workdir / "orchestrator"
        self.database_url = database_url
        # The harness's own connections need a writable server too (the URL may name a standby first).
        self.query_url = writable_target(database_url)
        self.redis_url = redis_url
        self.api_instances = api_instances
        self.meta_instances = meta_instances
        self.extra_env = dict(env or {})
        self.status_webhooks = status_webhooks
        self.pair_timeout = pair_timeout
        self.expected = (["api"] + [f"api-{i}" for i in range(1, api_instances)] + ["wwebjs", "meta"]
                         + [f"meta-{i}" for i in range(1, meta_instances)])
        self.faults: list[Fault] = []
        self.emulator: EmulatorProc | None = None
        self.sandbox: SandboxNetwork | None = None
        self._run: OrchestratorRun | None = None
        self.generation = 0
        self.meta: Tenant
        self.web: Tenant
        self.started_at = 0.0

    # --- life -----------------------------------------------------------------------------------

    def __enter__(self) -> ChaosSystem:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def run(self) -> OrchestratorRun:
        assert self._run is not None, "the orchestrator is not running"
        return self._run

    @property
    def api_url(self) -> str:
        return self.run.url("api", "")

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.meta, self.web = _seed(self.query_url)
        self.emulator = EmulatorProc(self.workdir, phones=[f"{META_PHONE_NUMBER_ID}:{META_TOKEN}"],
                                     extra=EMULATOR_ARGS, name="emulator")
        self.sandbox = start_sandbox(self.workdir, name="sandbox")
        self.start_orchestrator()
        if self.status_webhooks:
            self.emulator.configure_webhooks(url=self.run.url("meta", "/webhook/meta"))
        self.wait_healthy()
        self.pair_wwebjs()
        log(f"system up in {time.monotonic() - self.started_at:.1f}s: {sorted(self.run.children())}")

    def orchestrator_env(self) -> dict[str, str]:
        assert self.emulator is not None and self.sandbox is not None
        return {
            "ENCRYPTION_KEY": ENCRYPTION_KEY, "META_APP_SECRET": APP_SECRET, "META_WEBHOOK_VERIFY_TOKEN": "verify-me",
            "META_GRAPH_URL": self.emulator.url, "D360_BASE_URL": self.emulator.url,
            "WWEBJS_SANDBOX_URL": self.sandbox.url, "API_INSTANCES": str(self.api_instances),
            "META_INSTANCES": str(self.meta_instances), "LOG_LEVEL": "INFO", "PYTHONFAULTHANDLER": "1",
            **WWEBJS_ENV, **META_PACING_ENV, **POOL_ENV, **self.extra_env,
        }

    def start_orchestrator(self) -> OrchestratorRun:
        """Start ``bisnesgpt start`` (again, after a stop: same ports, same env, same data)."""
        previous = self._run
        self.generation += 1
        run = OrchestratorRun(self.run_dir, database_url=self.database_url, redis_url=self.redis_url,
                              **self.orchestrator_env())
        if previous is not None:  # same ports and settings; the log file is appended to
            run.ports = previous.ports
            run.env = previous.env
        self._run = run
        run.start()
        return run

    def stop_orchestrator(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """Signal the orchestrator and wait: (exit status, seconds). ``start_orchestrator`` restarts."""
        return self.run.stop(sig, timeout)

    def wait_healthy(self, timeout: float = 120) -> dict[str, Any]:
        return self.run.wait_healthy(self.expected, timeout=timeout)

    def pair_wwebjs(self) -> None:
        """Scan the QR of the wwebjs phone in the sandbox (first start) and wait until it is ready."""
        assert self.sandbox is not None
        deadline = time.monotonic() + self.pair_timeout
        while True:
            row = self.fetchrow("SELECT status FROM phone_status WHERE company_id = $1 AND phone_index = 0",
                                WEB_COMPANY)
            status = row["status"] if row else None
            if status == "ready":
                return
            if status == "qr":
                with contextlib.suppress(httpx.HTTPError):
                    asyncio.run(self.sandbox.scan(WEB_COMPANY, 0, phone=WEB_PHONE))
            if time.monotonic() > deadline:
                raise AssertionError(f"wwebjs phone not ready after {self.pair_timeout}s (status {status})")
            time.sleep(0.2)

    def close(self) -> None:
        if self._run is not None:
            with contextlib.suppress(Exception):
                if self._run.proc is not None and self._run.proc.popen.poll() is None:
                    self._run.stop(timeout=30)
            self._run.cleanup()
        if self.sandbox is not None:
            self.sandbox.proc.kill_tree()
        if self.emulator is not None:
            self.emulator.close()

    # --- faults ---------------------------------------------------------------------------------

    def in_flight(self, queues: tuple[str, ...] = SEND_QUEUES) -> set[str]:
        """Message ids a fault right now could make re-run: 'sending' rows + active jobs of ``queues``."""
        rows = _quick_query(self.query_url, "SELECT message_id FROM messages WHERE direction = 'outbound' "
                            "AND status = 'sending' AND queue_name = ANY($1::text[])", list(queues))
        ids = {str(r["message_id"]) for r in rows}
        with contextlib.suppress(redis.RedisError, OSError):
            client = sync_redis(self.redis_url)
            try:
                for q in queues:
                    ids.update(str(i) for i in client.lrange(f"bull:{q}:active", 0, -1))
            finally:
                client.close()
        return ids

    def record_fault(self, kind: str, target: str, inject: Callable[[], Any], *,
                     queues: tuple[str, ...] = SEND_QUEUES, **detail: Any) -> Fault:
        """Sample in-flight work of ``queues``, run ``inject()``, sample again; kept in ``faults``.

        ``inject`` may return the pid it hit. Pass ``queues=()`` for a fault that cannot make a
        send job re-run (e.g. killing an API instance): it then adds nothing to the duplicate bound.
        """
        before = self._safe_in_flight(queues)
        fault = Fault(kind, target, time.monotonic(), time.time(), detail=dict(detail))
        result = inject()
        if isinstance(result, int):
            fault.pid = result
        fault.in_flight_ids = before | self._safe_in_flight(queues)
        fault.in_flight = len(fault.in_flight_ids)
        self.faults.append(fault)
        log(f"fault {kind} {target} (pid {fault.pid}): {fault.in_flight} job(s) in flight")
        return fault

    def kill9(self, name: str) -> Fault:
        """``kill -9`` the live child ``name`` (``meta``, ``api-1``…) of the orchestrator.

        The duplicate bound counts every send job in flight at that moment (both queues: a
        fault also slows its neighbours, and a job whose lock lapses is re-run too).
        """
        pid = self.run.pid_of(name)
        assert pid is not None, f"no live {name} (children: {sorted(self.run.children())})"

        def _kill() -> int:
            os.kill(pid, signal.SIGKILL)
            return pid

        return self.record_fault("kill9", name, _kill)

    def wait_respawned(self, fault: Fault, timeout: float = 90) -> float:
        """Until a new ``fault.target`` serves ``/health`` 200 with its new pid; seconds since the fault."""
        name, old = fault.target, fault.pid
        role = name.split("-")[0]

        def _back() -> bool:
            pid = self.run.pid_of(name)
            if pid in (None, old):
                return False
            if (role == "api" and self.api_instances > 1) or (role == "meta" and self.meta_instances > 1):
                return True  # instances share a port: /health may answer from a sibling
            code, body = get_json(self.run.url(role), timeout=1.0)
            return code == 200 and body.get("pid") == pid

        wait_until(_back, timeout=timeout, interval=0.05, what=f"{name} back after {fault.kind}")
        fault.recovered_s = round(time.monotonic() - fault.at, 2)
        return fault.recovered_s

    def _safe_in_flight(self, queues: tuple[str, ...]) -> set[str]:
        if not queues:
            return set()
        try:
            return self.in_flight(queues)
        except Exception:  # the database may be the thing being broken
            return set()

    # --- queries --------------------------------------------------------------------------------

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return query(self.query_url, sql, *args)

    def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = self.fetch(sql, *args)
        return rows[0] if rows else None

    def status_counts(self, company_id: str | None = None) -> dict[str, int]:
        rows = self.fetch("SELECT status, count(*) AS n FROM messages WHERE direction = 'outbound' "
                          "AND ($1::text IS NULL OR company_id = $1) GROUP BY status", company_id)
        return {r["status"]: int(r["n"]) for r in rows}

    def meta_sends(self) -> list[dict[str, Any]]:
        """The emulator's accepted send requests (``ts`` wall clock, ``wamid``, ``body``)."""
        assert self.emulator is not None
        return [r for r in self.emulator.requests(operation="send", body=True) if r.get("http_status") == 200]

    def inject_meta_inbound(self, text: str, contact: str = CONTACTS[0]) -> str:
        """A contact writes to the Meta phone (the emulator sends the signed webhook); its wamid."""
        assert self.emulator is not None
        out = self.emulator.admin("POST", "/inbound", json={"phone_number_id": META_PHONE_NUMBER_ID, "from": contact,
                                                            "text": text})
        return str(out["message"]["id"])

    def inbound_stored(self, wamids: list[str]) -> set[str]:
        """Which of these inbound wamids the meta process stored (``messages``, direction inbound)."""
        rows = self.fetch("SELECT external_id FROM messages WHERE direction = 'inbound' "
                          "AND external_id = ANY($1::text[])", wamids)
        return {str(r["external_id"]) for r in rows}

    def web_sends(self) -> list[dict[str, Any]]:
        """Messages the sandbox network received from clients (``id``, ``received_count``, ``body``)."""
        assert self.sandbox is not None
        return [m for m in asyncio.run(self.sandbox.messages()) if m["direction"] == "out"]

    def wait_drained(self, message_ids: list[str], timeout: float = 120) -> float:
        """Seconds until every one of ``message_ids`` is in a final state in the database."""
        started = time.monotonic()
        pending: list[str] = list(message_ids)
        while True:
            rows = self.fetch("SELECT message_id, status FROM messages WHERE message_id = ANY($1::text[])", pending)
            final = {r["message_id"] for r in rows if r["status"] in FINAL_STATUSES}
            pending = [m for m in pending if m not in final]
            if not pending:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                left = self.fetch("SELECT status, count(*) AS n FROM messages WHERE message_id = ANY($1::text[]) "
                                  "GROUP BY status", pending)
                raise AssertionError(f"{len(pending)} acknowledged message(s) not final after {timeout}s: "
                                     f"{[(r['status'], r['n']) for r in left]}; missing rows: "
                                     f"{len(pending) - sum(r['n'] for r in left)}; e.g. {pending[:3]}")
            time.sleep(0.25)


def first_receipts_after(system: ChaosSystem, wall: float, timeout: float = 60) -> tuple[float, float]:
    """Wall-clock seconds after ``wall`` of the first Meta and the first WhatsApp-Web receipt."""
    deadline = time.monotonic() + timeout
    meta: float | None = None
    web: float | None = None
    while time.monotonic() < deadline and (meta is None or web is None):
        if meta is None:
            after = [float(r["ts"]) for r in system.meta_sends() if float(r["ts"]) > wall]
            meta = min(after) - wall if after else None
        if web is None:
            after = [float(m["first_at"]) for m in system.web_sends() if float(m["first_at"]) > wall]
            web = min(after) - wall if after else None
        if meta is None or web is None:
            time.sleep(0.1)
    assert meta is not None and web is not None, f"processing did not resume: meta {meta}, wwebjs {web}"
    return round(meta, 2), round(web, 2)


def _quick_query(database_url: str, sql: str, *args: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
    """A query that gives up within ``timeout`` (the server may be the thing being broken)."""
    import asyncpg

    async def _run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url, timeout=timeout)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args, timeout=timeout)]
        finally:
            await conn.close(timeout=timeout)

    return asyncio.run(_run())


def _seed(database_url: str) -> tuple[Tenant, Tenant]:
    async def _run() -> tuple[Tenant, Tenant]:
        from bisnesgpt.db.pool import Database
        from bisnesgpt.tenancy import store as tenancy
        from tests.support.meta import add_meta_phone, open_window

        db = Database(database_url, max_size=2)
        await db.open()
        try:
            await add_meta_phone(db, company_id=META_COMPANY, phone_index=0, phone_number_id=META_PHONE_NUMBER_ID,
                                 token=META_TOKEN, display=META_DISPLAY,
                                 settings={"messages_per_second": 200, "pair_interval_ms": 0})
            await open_window(db, list(CONTACTS), company_id=META_COMPANY, phone_index=0)
            await db.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", WEB_COMPANY)
            await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                             "VALUES ($1, 0, 'wwebjs')", WEB_COMPANY)
            async with db.transaction() as conn:
                _r, meta_key = await tenancy.create_api_key(conn, company_id=META_COMPANY, name="chaos")
                _r, web_key = await tenancy.create_api_key(conn, company_id=WEB_COMPANY, name="chaos")
        finally:
            await db.close()
        return Tenant("meta", META_COMPANY, meta_key), Tenant("wwebjs", WEB_COMPANY, web_key)

    return asyncio.run(_run())


# --- the load generator -------------------------------------------------------------------------


@dataclass
class Send:
    """One logical send (one Idempotency-Key) and what the API answered."""

    kind: str  # tenant kind: "meta" | "wwebjs"
    key: str
    company_id: str
    to: str
    body: str
    started: float  # monotonic
    message_id: str | None = None
    acked_at: float | None = None  # monotonic, the first 2xx
    status_code: int | None = None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)  # every messageId any 2xx answered (must be 1)
    attempt_log: list[tuple[float, float, str]] = field(default_factory=list)  # (began, took, outcome)


RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


class LoadGenerator:
    """Open-loop sends through the HTTP API in a background thread; see the module docstring.

    ``sends`` holds every ``Send``; ``acked()`` those with a 2xx. ``stop()`` stops issuing new
    sends and waits (up to ``give_up_after``) for the ones still retrying.
    """

    def __init__(self, system: ChaosSystem, *, meta_rate: float = 10.0, wwebjs_rate: float = 5.0,
                 give_up_after: float = 120.0, request_timeout: float = 10.0, tag: str | None = None) -> None:
        self.system = system
        self.rates = {"meta": meta_rate, "wwebjs": wwebjs_rate}
        self.give_up_after = give_up_after
        self.request_timeout = request_timeout
        self.tag = tag or uuid.uuid4().hex[:8]
        self.sends: list[Send] = []
        self.latencies: list[tuple[float, float, int | None]] = []  # (monotonic start, seconds, status)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="chaos-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop issuing sends; wait for the ones in progress (each retries until a 2xx or give-up)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(self.give_up_after + 30)
        self.stopped_at = time.monotonic()
        thread, self._thread = self._thread, None
        if thread.is_alive():
            raise AssertionError("load generator did not finish")
        if self._error is not None:
            raise AssertionError(f"load generator failed: {self._error!r}") from self._error
        log(f"load stopped: {self.summary()}")

    def acked(self, kind: str | None = None) -> list[Send]:
        with self._lock:
            return [s for s in self.sends if s.message_id and (kind is None or s.kind == kind)]

    def wait_acked(self, count: int, kind: str | None = None, timeout: float = 60) -> None:
        """Until at least ``count`` more sends (of ``kind``) are acknowledged than now."""
        target = len(self.acked(kind)) + count
        wait_until(lambda: len(self.acked(kind)) >= target or self._error is not None, timeout=timeout,
                   interval=0.05, what=f"{count} more acknowledged {kind or ''} sends")
        if self._error is not None:
            raise AssertionError(f"load generator failed: {self._error!r}")

    def summary(self) -> str:
        with self._lock:
            total = len(self.sends)
            acked = sum(1 for s in self.sends if s.message_id)
            retried = sum(1 for s in self.sends if s.attempts > 1)
            done = [s for s in self.sends if s.acked_at is not None]
            worst = max(done, key=lambda s: s.acked_at - s.started if s.acked_at else 0.0, default=None)
        errors = self.error_kinds()
        slowest = ""
        if worst is not None and worst.acked_at is not None:
            tries = [(round(b - worst.started, 1), round(t, 1), o) for b, t, o in worst.attempt_log]
            slowest = f", slowest ack {worst.acked_at - worst.started:.1f}s ({worst.key}: {tries[-4:]})"
        return (f"{total} sends, {acked} acknowledged, {retried} retried{slowest}, "
                f"largest gap between sends begun {self.largest_start_gap():.2f}s"
                + (f", errors {errors}" if errors else ""))

    def largest_start_gap(self) -> float:
        """The longest time the generator began no send (its own health: it should be ~1/rate)."""
        with self._lock:
            starts = sorted(s.started for s in self.sends)
        return max((b - a for a, b in itertools.pairwise(starts)), default=0.0)

    def error_kinds(self, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        """Failed attempts by kind (``409``, ``503``, ``ConnectError``…) of sends begun in [since, until]."""
        out: dict[str, int] = {}
        with self._lock:
            for send in self.sends:
                if since <= send.started <= until:
                    for error in send.errors:
                        kind = error.split(":", 1)[0]
                        out[kind] = out.get(kind, 0) + 1
        return out

    def max_latency(self, since: float = 0.0) -> float:
        with self._lock:
            return max((d for t, d, _ in self.latencies if t >= since), default=0.0)

    # --- the loop -------------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
            async with httpx.AsyncClient(base_url=self.system.api_url, timeout=self.request_timeout,
                                         limits=limits) as client:
                tasks: set[asyncio.Task[None]] = set()
                producers = [asyncio.create_task(self._produce(client, tenant, tasks))
                             for tenant in (self.system.meta, self.system.web) if self.rates[tenant.kind] > 0]
                await asyncio.gather(*producers)
                if tasks:
                    await asyncio.wait(tasks, timeout=self.give_up_after + 15)
        except BaseException as exc:  # surfaced by stop()/wait_acked()
            self._error = exc

    async def _produce(self, client: httpx.AsyncClient, tenant: Tenant, tasks: set[asyncio.Task[None]]) -> None:
        interval = 1.0 / self.rates[tenant.kind]
        next_at = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            seq += 1
            key = f"{self.tag}-{tenant.kind}-{seq:06d}"
            to = tenant.contacts[seq % len(tenant.contacts)]
            send = Send(tenant.kind, key, tenant.company_id, to, f"chaos {key}", time.monotonic())
            with self._lock:
                self.sends.append(send)
            task = asyncio.create_task(self._send(client, tenant, send))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # fell behind (a stalled loop): do not burst to catch up
                next_at = time.monotonic()

    async def _send(self, client: httpx.AsyncClient, tenant: Tenant, send: Send) -> None:
        path = f"/api/v2/messages/text/{tenant.company_id}/{send.to}"
        body = {"message": send.body, "phoneIndex": tenant.phone_index}
        headers = {**tenant.headers, "Idempotency-Key": send.key}
        delay = 0.1
        while True:
            send.attempts += 1
            began = time.monotonic()
            status: int | None = None
            try:
                response = await client.post(path, json=body, headers=headers)
                status = response.status_code
                send.attempt_log.append((began, time.monotonic() - began, str(status)))
                if 200 <= status < 300:
                    message_id = str(response.json()["messageId"])
                    with self._lock:
                        send.message_ids.add(message_id)
                        if send.message_id is None:
                            send.message_id, send.acked_at, send.status_code = message_id, time.monotonic(), status
                        self.latencies.append((began, time.monotonic() - began, status))
                    return
                send.errors.append(f"{status}: {response.text[:200]}")
                if status not in RETRY_STATUSES:
                    send.status_code = status
                    return
            except (httpx.TransportError, ValueError, KeyError) as exc:
                send.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                send.attempt_log.append((began, time.monotonic() - began, type(exc).__name__))
            with self._lock:
                self.latencies.append((began, time.monotonic() - began, status))
            if time.monotonic() - send.started > self.give_up_after:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


# --- the checker --------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """Every acknowledged message classified, plus what nobody acknowledged but someone saw.

    * delivered — the provider received it exactly once and the database row is final-OK
      (sent/delivered/read) with the provider's id;
    * duplicated — the provider received it more than once (``duplicate_receipts`` extra copies);
    * lost — acknowledged but never received by the provider, no database row, or the row
      failed/cancelled;
    * unexpected — received or stored but never acknowledged (and never even attempted),
      two message ids for one Idempotency-Key, or a row whose external id the provider never
      issued, or a send that got a non-retryable 4xx.
    """

    scenario: str
    acked: int
    delivered: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    duplicate_receipts: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    unacked: int = 0  # sends that never got a 2xx before give-up (reported; they may have been stored)
    by_kind: dict[str, int] = field(default_factory=dict)
    duplicate_bound: int = 0
    # Duplicated messages that were NOT among the jobs in flight at any fault (reported: a
    # re-run for another reason, e.g. a job whose lock lapsed on a starved machine).
    duplicates_outside_faults: list[str] = field(default_factory=list)
    drain_s: float = 0.0
    # Chats whose provider received their acknowledged messages out of acceptance order.
    order_violations: list[str] = field(default_factory=list)
    ordered_chats: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        recov = self.extra.get("recovery")
        parts = [f"scenario={self.scenario!r}", f"scale={CHAOS_SCALE:g}", f"acked={self.acked}",
                 *(f"{k}={v}" for k, v in sorted(self.by_kind.items())),
                 f"delivered={len(self.delivered)}", f"lost={len(self.lost)}",
                 f"duplicated={len(self.duplicated)}(+{self.duplicate_receipts} copies, bound {self.duplicate_bound}, "
                 f"{len(self.duplicates_outside_faults)} not in flight at a fault)",
                 f"unexpected={len(self.unexpected)}", f"unacked={self.unacked}", f"drain={self.drain_s:.1f}s",
                 f"order_violations={len(self.order_violations)}/{self.ordered_chats} chats"]
        if recov:
            parts.append(f"recovery={recov}")
        parts += [f"{k}={v}" for k, v in self.extra.items() if k != "recovery"]
        return "CHAOS RESULT " + " ".join(parts)

    def assert_ok(self) -> None:
        print("\n" + self.summary(), flush=True)
        problems = []
        if self.lost:
            problems.append(f"lost {len(self.lost)}: {self.lost[:5]}")
        if self.unexpected:
            problems.append(f"unexpected {len(self.unexpected)}: {self.unexpected[:5]}")
        if self.duplicate_receipts > self.duplicate_bound:
            problems.append(f"{self.duplicate_receipts} duplicate receipts > {self.duplicate_bound} jobs in "
                            f"flight at the faults: {self.duplicated[:5]}")
        if self.order_violations:
            problems.append(f"out of acceptance order in {len(self.order_violations)} chats: "
                            f"{self.order_violations[:3]}")
        if self.acked == 0:
            problems.append("nothing was acknowledged: the scenario proved nothing")
        assert not problems, "; ".join(problems)


def check(system: ChaosSystem, load: LoadGenerator, *, scenario: str, drain_timeout: float = 180,
          duplicate_bound: int | None = None, extra: dict[str, Any] | None = None) -> CheckResult:
    """Wait for every acknowledged message to be final, then classify everything (``CheckResult``).

    ``duplicate_bound`` defaults to the number of distinct jobs in flight at the faults (the
    union of ``Fault.in_flight_ids`` over ``system.faults``; ``Fault.in_flight`` for a fault
    recorded without ids).
    """
    acked = load.acked()
    with load._lock:
        sends = list(load.sends)
    result = CheckResult(scenario, len(acked), extra=dict(extra or {}))
    result.by_kind = {kind: sum(1 for s in acked if s.kind == kind) for kind in ("meta", "wwebjs")}
    result.unacked = sum(1 for s in sends if not s.message_id)
    in_flight_ids: set[str] = set()
    for fault in system.faults:
        in_flight_ids |= fault.in_flight_ids
    result.duplicate_bound = (duplicate_bound if duplicate_bound is not None else len(in_flight_ids) + sum(
        f.in_flight for f in system.faults if not f.in_flight_ids))
    recoveries = [f"{f.target}:{f.recovered_s}s" for f in system.faults if f.recovered_s is not None]
    if recoveries and "recovery" not in result.extra:
        result.extra["recovery"] = ",".join(recoveries[:12]) + ("…" if len(recoveries) > 12 else "")
    result.drain_s = system.wait_drained([s.message_id for s in acked if s.message_id], timeout=drain_timeout)

    by_key = {s.key: s for s in sends}
    rows = system.fetch(
        "SELECT message_id, company_id, status, external_id, content, error_code, error_title, chat_seq FROM messages "
        "WHERE direction = 'outbound' AND company_id = ANY($1::text[])", [META_COMPANY, WEB_COMPANY])
    rows_by_id = {r["message_id"]: r for r in rows}
    from bisnesgpt.sandbox.wweb.protocol import wa_message_id

    # What the providers received: the emulator per key (its body text), the sandbox per id.
    meta_by_key: dict[str, list[str]] = {}
    for request in system.meta_sends():
        text = ((request.get("body") or {}).get("text") or {}).get("body", "")
        key = text[len("chaos "):] if isinstance(text, str) and text.startswith("chaos ") else None
        if key is None or key not in by_key:
            result.unexpected.append(f"emulator received an unknown message {text!r} ({request.get('wamid')})")
            continue
        meta_by_key.setdefault(key, []).append(str(request.get("wamid")))
    web_sends = system.web_sends()
    web_by_wa_id = {m["id"]: m for m in web_sends}
    acked_wa_ids: set[str] = set()
    result.order_violations, result.ordered_chats = _order_check(acked, rows_by_id, system.meta_sends(), web_sends)

    for send in sends:
        if send.status_code is not None and 400 <= send.status_code < 500 and send.status_code not in RETRY_STATUSES:
            result.unexpected.append(f"{send.key}: refused {send.errors[-1:]}")
        if len(send.message_ids) > 1:
            result.unexpected.append(f"{send.key}: one Idempotency-Key, {len(send.message_ids)} message ids")
    for send in acked:
        assert send.message_id is not None
        row = rows_by_id.get(send.message_id)
        if send.kind == "meta":
            wamids = meta_by_key.get(send.key, [])
            receipts = len(wamids)
        else:
            wa_id = wa_message_id(send.message_id)
            acked_wa_ids.add(wa_id)
            received = web_by_wa_id.get(wa_id)
            wamids = [wa_id] if received else []
            receipts = int(received["received_count"]) if received else 0
        label = f"{send.kind} {send.key} {send.message_id}"
        if row is None:
            result.lost.append(f"{label}: no database row")
            continue
        if row["status"] not in OK_STATUSES:
            result.lost.append(f"{label}: {row['status']} {row['error_code']} {row['error_title']} "
                               f"(provider saw it {receipts}x)")
            continue
        if receipts == 0:
            result.lost.append(f"{label}: {row['status']} in the database, never received by the provider")
            continue
        if row["external_id"] not in wamids:
            result.unexpected.append(f"{label}: external id {row['external_id']} not issued for it ({wamids})")
            continue
        if receipts > 1:
            result.duplicated.append(f"{label}: received {receipts}x")
            result.duplicate_receipts += receipts - 1
            if send.message_id not in in_flight_ids:
                result.duplicates_outside_faults.append(label)
        else:
            result.delivered.append(send.message_id)

    acked_ids = {s.message_id for s in acked}
    attempted_ids = {m for s in sends for m in s.message_ids}
    for row in rows:
        if row["message_id"] not in acked_ids and row["message_id"] not in attempted_ids:
            content = row["content"] or ""
            key = content[len("chaos "):] if content.startswith("chaos ") else None
            send = by_key.get(key) if key else None
            if send is None or send.message_id is not None:
                result.unexpected.append(f"database row {row['message_id']} ({content!r}) never acknowledged")
    web_keys = {f"chaos {s.key}" for s in sends if s.kind == "wwebjs"}
    for wa_id, received in web_by_wa_id.items():
        if wa_id in acked_wa_ids:
            continue
        text = str((received.get("body") or {}).get("body") or (received.get("body") or {}).get("text") or "")
        if text not in web_keys:
            result.unexpected.append(f"sandbox received an unknown message {wa_id} {text!r}")
    return result


def _order_check(acked: list[Send], rows_by_id: dict[str, dict[str, Any]], meta_sends: list[dict[str, Any]],
                 web_sends: list[dict[str, Any]]) -> tuple[list[str], int]:
    """Per chat, whether each provider received the chat's acknowledged messages in acceptance order
    (the database's per-chat number, the order the accepting transactions committed in)."""
    from bisnesgpt.sandbox.wweb.protocol import wa_message_id

    expected: dict[str, list[tuple[int, str]]] = {}
    for send in acked:
        row = rows_by_id.get(send.message_id or "")
        if row is not None and row.get("chat_seq") is not None:
            expected.setdefault(f"{send.kind}:{send.to}", []).append((int(row["chat_seq"]), send.body))
    # What each provider received, in the order it received it; a duplicate appears at each receipt.
    received: dict[str, list[str]] = {}
    for request in meta_sends:
        text = ((request.get("body") or {}).get("text") or {}).get("body", "")
        received.setdefault(f"meta:{request.get('wa_id')}", []).append(str(text))
    body_by_wa_id = {wa_message_id(s.message_id): s.body for s in acked if s.kind == "wwebjs" and s.message_id}
    events: list[tuple[float, str, str]] = []
    for message in web_sends:
        chat = "wwebjs:" + str(message.get("chat") or "").split("@", 1)[0]
        body = body_by_wa_id.get(str(message["id"]), "")
        events.append((float(message.get("first_at") or 0.0), chat, body))
        if int(message.get("received_count") or 1) > 1:
            events.append((float(message.get("last_at") or message.get("first_at") or 0.0), chat, body))
    for _at, chat, body in sorted(events):
        received.setdefault(chat, []).append(body)
    accepted = {chat: [body for _seq, body in sorted(items)] for chat, items in expected.items()}
    return chat_order_violations(accepted, received), len(accepted)


def chat_order_violations(accepted: dict[str, list[str]], received: dict[str, list[str]]) -> list[str]:
    """Chats whose provider saw a message after one accepted later than it (copies of a message
    count at each receipt: a re-sent message must still come before its successors)."""
    violations = []
    for chat, order in accepted.items():
        rank = {body: index for index, body in enumerate(order)}
        seen = [rank[body] for body in received.get(chat, []) if body in rank]
        for earlier, later in itertools.pairwise(seen):
            if later < earlier:
                violations.append(f"{chat}: {order[later]!r} after {order[earlier]!r}")
                break
    return violations


# --- small helpers scenarios share ---------------------------------------------------------------


def max_gap(timestamps: list[float], start: float, end: float) -> float:
    """The longest stretch in [start, end] (wall clock) without a timestamp."""
    points = sorted([start, *(t for t in timestamps if start <= t <= end), end])
    return max((b - a for a, b in itertools.pairwise(points)), default=end - start)


def child_connections_to(pid: int, port: int) -> int:
    """Open TCP connections of process ``pid`` to ``port`` on localhost (its DB/Redis sockets)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


@contextlib.contextmanager
def scenario_timer(name: str) -> Iterator[dict[str, float]]:
    """Times a scenario; prints its duration (the lead quotes them)."""
    out: dict[str, float] = {}
    started = time.monotonic()
    try:
        yield out
    finally:
        out["seconds"] = time.monotonic() - started
        log(f"{name}: {out['seconds']:.1f}s at CHAOS_SCALE={CHAOS_SCALE:g}")


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str)[:2000]
