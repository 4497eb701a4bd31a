"""Accept: durable ``POST /api/v2/messages/text/…`` (202) against ``GET /api/health``, same server.

For each configuration (uvicorn with API_INSTANCES 1 and 2 — N ``bisnesgpt run api``
processes sharing one port through SO_REUSEPORT, exactly what the orchestrator spawns —
and granian with 1 instance when it is installed):

1. saturation: closed loop, ``connections`` keep-alive connections, for ``duration`` s —
   first ``/api/health``, then the POST;
2. 50 %: open loop at half of each one's saturation throughput.

No engine consumes the queue here (the figure is the API's); the outbox reconciler is
slowed (``OUTBOX_RECONCILE_INTERVAL`` 60 s, ``OUTBOX_MIN_AGE`` 600 s) so that it does not walk
the growing backlog of unconsumed ``queued`` rows, which never happens with running engines.
Every 202 is checked against the database afterwards (durable means: the row exists).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from bench import seed
from bench.system import (
    REPO,
    PidSource,
    Servers,
    Spawned,
    bisnesgpt_args,
    clean_env,
    free_port,
    run_load,
    run_sql,
    scenario_storage,
    storage_pids,
    wait_for,
)


class StatementWaits:
    """What the server's busy client backends are doing, sampled every 20 ms while a window runs.

    ``pg_stat_activity`` of the scenario's database: each sample counts the backends running a
    statement by their wait event (none: on the CPU, or waiting for it). For the POST window
    that says where an accept's time inside PostgreSQL goes — e.g. ``LWLock:WALWrite`` and
    ``IO:WalSync``, waiting for the commit's WAL flush (the durability of the 202).
    """

    INTERVAL = 0.02
    QUERY = ("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS what FROM pg_stat_activity "
             "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' "
             "AND backend_type = 'client backend'")

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            while not self._stop.is_set():
                self.counts.update(row["what"] for row in await conn.fetch(self.QUERY))
                await asyncio.sleep(self.INTERVAL)
        finally:
            await conn.close()

    def __enter__(self) -> StatementWaits:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def shares(self) -> dict[str, float]:
        """Each wait's share of the sampled busy backends, % (largest first)."""
        total = sum(self.counts.values())
        return {what: round(100 * n / total, 1) for what, n in self.counts.most_common(8)} if total else {}


def granian_available() -> bool:
    return importlib.util.find_spec("granian") is not None


def start_api(workdir: Path, database_url: str, redis_url: str, *, instances: int, server: str,
              port: int, in_flight: int = 0) -> list[Spawned]:
    """``in_flight``: ADMISSION_MAX_IN_FLIGHT; 0 (off) here, where closed-loop saturation is the figure."""
    procs: list[Spawned] = []
    try:
        for instance in range(instances):
            env = clean_env(
                DATABASE_URL=database_url, REDIS_URL=redis_url, API_PORT=str(port), HOST="127.0.0.1",
                INSTANCE_ID=str(instance), API_INSTANCES=str(instances), DATA_DIR=str(workdir / "data"),
                OUTBOX_RECONCILE_INTERVAL="60000", OUTBOX_MIN_AGE="600000", PYTHONPATH=str(REPO),
                ADMISSION_MAX_IN_FLIGHT=str(in_flight),
                **seed.PACING_ENV,
            )
            args = [sys.executable, "-m", "bench.granian_api"] if server == "granian" else bisnesgpt_args("run", "api")
            procs.append(Spawned(args, cwd=workdir, env=env, log_name=f"api-{server}-{instances}-{instance}"))
        for proc in procs:
            wait_for(lambda p=proc: "serving on" in p.output(), timeout=90, what="api serving", proc=proc)  # type: ignore[misc]
    except BaseException:
        for proc in procs:
            proc.close()
        raise
    return procs


def measure(servers: Servers, workdir: Path, *, instances: int, server: str, duration: float,
            connections: int, log: Any) -> dict[str, Any]:
    with scenario_storage(servers) as (database_url, redis_url):
        api_key = seed.seed_meta_tenant(database_url)
        port = free_port()
        procs = start_api(workdir, database_url, redis_url, instances=instances, server=server, port=port)
        try:
            base = f"http://127.0.0.1:{port}"
            pids: dict[str, PidSource] = {f"api-{i}": p.pid for i, p in enumerate(procs)}
            pids.update(storage_pids(servers, database_url))
            health = [{"method": "GET", "url": f"{base}/api/health"}]
            post = seed.text_shapes(base, api_key)
            out: dict[str, Any] = {"server": server, "instances": instances}
            log(f"accept[{server} x{instances}]: saturation /api/health")
            out["health_saturation"] = run_load(base, health, connections=connections, duration=duration,
                                                cpu_pids=pids, workdir=workdir).public()
            log(f"accept[{server} x{instances}]: saturation POST text")
            with StatementWaits(database_url) as waits:
                out["post_saturation"] = run_load(base, post, connections=connections, duration=duration,
                                                  cpu_pids=pids, workdir=workdir).public()
            out["post_saturation"]["postgres_busy_backends_pct"] = waits.shares()
            half_health = out["health_saturation"]["throughput"] / 2
            half_post = out["post_saturation"]["throughput"] / 2
            log(f"accept[{server} x{instances}]: 50 % /api/health ({half_health:.0f}/s)")
            out["health_half"] = run_load(base, health, connections=connections, duration=duration, rate=half_health,
                                          cpu_pids=pids, workdir=workdir).public()
            log(f"accept[{server} x{instances}]: 50 % POST text ({half_post:.0f}/s)")
            out["post_half"] = run_load(base, post, connections=connections, duration=duration, rate=half_post,
                                        cpu_pids=pids, workdir=workdir).public()
            accepted = sum(out[k]["statuses"].get("202", 0) for k in ("post_saturation", "post_half"))
            stored = run_sql(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
            # The measured windows' 202s are a subset of all 202s (warm-up ones are stored too).
            out["durability"] = {"accepted_202_in_windows": accepted, "rows_stored": stored,
                                 "every_202_stored": stored >= accepted}
            h, p = out["health_saturation"]["throughput"], out["post_saturation"]["throughput"]
            out["ratio"] = round(p / h, 3) if h else None
        finally:
            for proc in procs:
                proc.close()
        return out


def run(servers: Servers, workdir: Path, *, duration: float, connections: int, instance_counts: tuple[int, ...],
        granian: bool, log: Any) -> dict[str, Any]:
    configs = [("uvicorn", n) for n in instance_counts]
    skipped = None
    if granian:
        if granian_available():
            configs.append(("granian", 1))
        else:
            skipped = "granian not installed (pip install granian into the venv to compare)"
    results = [measure(servers, workdir, instances=n, server=kind, duration=duration, connections=connections,
                       log=log) for kind, n in configs]
    note = ("/api/health is not trivial: each call pings PostgreSQL (SELECT 1 through the pool) and Redis (PING), "
            "and reports the queue consumers and components' checks")
    return {"runs": results, "health_note": note, "granian_skipped": skipped}
