"""Footprint and recovery of the whole fleet under the real orchestrator (default supervision).

One stack: ``bisnesgpt start`` with api, wwebjs (sandbox driver, against ``bisnesgpt
sandbox wweb serve``) and meta (against the Cloud API emulator). The orchestrator keeps
the product's DEFAULT supervision settings (restart delays api 2 s / wwebjs 5 s / meta
3 s, heartbeats, min uptime); only engine settings are changed (Meta pacing as in the e2e
figure, faster wwebjs session start-up so 50 sessions pair in seconds).

Footprint: RSS of every role idle; of wwebjs with 1, 10, 50 paired sandbox sessions (per
session = growth over the idle process / sessions); of every role under a mixed load.

Recovery, per role: ``kill -9`` → a new process spawned → its ``/health`` 200 (the new pid)
and, for meta, a job that was in flight in the killed worker (held by recipient pacing)
→ re-run and received by the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from tests.support.meta import EmulatorProc
from tests.support.orchestrator import OrchestratorRun
from tests.support.wwebjs import SandboxNetwork, company_key, seed_phone, start_sandbox

from bench import seed
from bench.e2e import receipts, start_orchestrator, wait_drained
from bench.system import RssSampler, Servers, http_json, rss_mb, run_load, run_sql, scenario_storage, wait_for

WEB_COMPANY = "bench-web"
RECOVERY_PHONE = 9  # a Meta phone whose recipient pacing holds the second message in the worker
RECOVERY_CONTACT = seed.CONTACTS[0]
WWEBJS_ENGINE_ENV = {
    "WWEBJS_DRIVER": "sandbox",
    "WWEBJS_START_CONCURRENCY": "10",
    "WWEBJS_START_STAGGER_MS": "50",
    "WWEBJS_RECONCILE_INTERVAL_MS": "500",
    "WWEBJS_SEND_JITTER_MS": "20",
}
STATUS_COUNT = "SELECT count(*) AS n FROM phone_status WHERE company_id = $1 AND status = $2"


def _pids(orchestrator: OrchestratorRun) -> dict[str, int]:
    return {name: proc.pid for name, proc in orchestrator.children().items()}


def _sessions(orchestrator: OrchestratorRun, sandbox: SandboxNetwork, database_url: str, counts: tuple[int, ...],
              log: Any) -> dict[str, Any]:
    wwebjs_pid = orchestrator.children()["wwebjs"].pid
    time.sleep(2)
    baseline = rss_mb(wwebjs_pid) or 0.0
    out: dict[str, Any] = {"rss_mb_0_sessions": round(baseline, 1), "by_count": []}
    have = 0
    for count in counts:
        log(f"fleet: pairing sandbox sessions up to {count}")
        new = list(range(have, count))
        for index in new:
            asyncio.run(seed_phone(database_url, WEB_COMPANY, index))
        fresh = len(new)
        wait_for(lambda n=fresh, c=count: run_sql(database_url, STATUS_COUNT, WEB_COMPANY, "qr")[0]["n"] >= n
                 or run_sql(database_url, STATUS_COUNT, WEB_COMPANY, "ready")[0]["n"] >= c,
                 timeout=120, interval=0.2, what=f"{count} sessions showing a QR")

        async def scan_all(indexes: list[int] = new) -> None:
            await asyncio.gather(*(sandbox.scan(WEB_COMPANY, i, phone=f"6019{i:07d}") for i in indexes))

        asyncio.run(scan_all())
        took = wait_for(lambda c=count: run_sql(database_url, STATUS_COUNT, WEB_COMPANY, "ready")[0]["n"] >= c,
                        timeout=180, interval=0.2, what=f"{count} sessions ready")
        have = count
        time.sleep(2)  # let allocations settle
        rss = rss_mb(wwebjs_pid) or 0.0
        out["by_count"].append({"sessions": count, "rss_mb": round(rss, 1),
                                "per_session_mb": round((rss - baseline) / count, 2),
                                "ready_after_scan_s": round(took, 2)})
    return out


def _kill_and_watch(orchestrator: OrchestratorRun, role: str) -> dict[str, Any]:
    old = orchestrator.pid_of(role)
    assert old is not None, f"no {role} process"
    health = orchestrator.url(role, "/health")
    killed = time.monotonic()
    killed_wall = time.time()
    os.kill(old, signal.SIGKILL)
    respawn = wait_for(lambda: orchestrator.pid_of(role) not in (None, old), timeout=120, interval=0.02,
                       what=f"{role} respawned")
    new = orchestrator.pid_of(role)

    def _healthy() -> bool:
        code, body = http_json(health, timeout=1.0)
        return code == 200 and isinstance(body, dict) and body.get("pid") == new

    wait_for(_healthy, timeout=120, interval=0.02, what=f"{role} /health 200")
    return {"role": role, "respawn_s": round(respawn, 2), "health_200_s": round(time.monotonic() - killed, 2),
            "killed_wall": killed_wall, "old_pid": old, "new_pid": new}


def _meta_in_flight(orchestrator: OrchestratorRun, emulator: EmulatorProc, database_url: str, redis_url: str,
                    api_key: str) -> dict[str, Any]:
    """kill -9 meta while a job is active in it (held by the recipient's pacing); time to its re-run."""
    base = orchestrator.url("api", "")
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{base}/api/v2/messages/text/{seed.COMPANY}/{RECOVERY_CONTACT}"

    def post(body: str) -> str:
        response = httpx.post(url, json={"message": body, "phoneIndex": RECOVERY_PHONE}, headers=headers, timeout=10)
        response.raise_for_status()
        return str(response.json()["messageId"])

    def status(message_id: str) -> dict[str, Any]:
        return run_sql(database_url, "SELECT status, external_id, attempts FROM messages WHERE message_id = $1",
                       message_id)[0]

    first = post("recovery: takes the recipient's slot")
    wait_for(lambda: status(first)["status"] == "sent", timeout=30, what="first recovery message sent")
    held = post("recovery: held by pacing, in flight when meta is killed")
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: held.encode() in client.lrange("bull:meta-messages:active", 0, -1), timeout=10,
                 interval=0.01, what="the held job active in meta")
    finally:
        client.close()
    result = _kill_and_watch(orchestrator, "meta")
    wait_for(lambda: status(held)["status"] == "sent", timeout=60, interval=0.05, what="the held job re-run")
    row = status(held)
    received = receipts(emulator).get(row["external_id"])
    result["in_flight_rerun_s"] = round(received - result["killed_wall"], 2) if received else None
    result["in_flight_attempts"] = row["attempts"]
    return result


def run(servers: Servers, workdir: Path, *, duration: float, sessions: tuple[int, ...], log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stackdir = workdir / "fleet"
    stackdir.mkdir(exist_ok=True)
    recovery_phone = {RECOVERY_PHONE: {"messages_per_second": seed.PHONE_RATE, "pair_interval_ms": 2500,
                                       "pair_burst": 1}}
    with scenario_storage(servers) as (database_url, redis_url):
        api_key = seed.seed_meta_tenant(database_url, recovery_phone)
        web_key = asyncio.run(_web_company(database_url))
        emulator = EmulatorProc(stackdir, phones=[*seed.emulator_phones(),
                                                  f"{seed.phone_number_id(RECOVERY_PHONE)}:{seed.TOKEN}"],
                                extra=seed.EMULATOR_ARGS, name="fleet-emulator")
        sandbox: SandboxNetwork | None = None
        orchestrator: OrchestratorRun | None = None
        try:
            sandbox = start_sandbox(stackdir, name="fleet-sandbox")
            log("fleet: orchestrator with api, wwebjs, meta (default supervision settings)")
            orchestrator = start_orchestrator(stackdir, database_url, redis_url, META_GRAPH_URL=emulator.url,
                                              WWEBJS_SANDBOX_URL=sandbox.url, **seed.PACING_ENV, **WWEBJS_ENGINE_ENV)
            orchestrator.wait_healthy(["api", "wwebjs", "meta"], timeout=180)
            time.sleep(3)
            pids = _pids(orchestrator)
            pids["orchestrator"] = orchestrator.pid
            out["rss_idle_mb"] = {name: round(rss_mb(pid) or 0.0, 1) for name, pid in pids.items()}
            out["sessions"] = _sessions(orchestrator, sandbox, database_url, sessions, log)
            pids = _pids(orchestrator)
            pids["orchestrator"] = orchestrator.pid

            # --- mixed load: Meta and WhatsApp-Web messages through the API --------------------------
            base = orchestrator.url("api", "")
            shapes = seed.text_shapes(base, api_key)
            web = [{"method": "POST", "url": f"{base}/api/v2/messages/text/{WEB_COMPANY}/60155{i:06d}",
                    "body": f'{{"message": "bench", "phoneIndex": {i % max(sessions)}}}',
                    "headers": {"Authorization": f"Bearer {web_key}"}} for i in range(max(sessions) * 2)]
            mixed = [s for pair in zip(shapes * 4, web * 4, strict=False) for s in pair]
            rate = 200.0
            log(f"fleet: mixed load {rate:.0f}/s (half Meta, half WhatsApp-Web) for RSS under load")
            with RssSampler(pids) as rss:
                load = run_load(base, mixed, connections=16, duration=max(duration, 5.0), rate=rate,
                                cpu_pids=pids, workdir=workdir)
                drained = wait_drained(database_url, timeout=180)
            out["under_load"] = {"load": load.public(), "rss_peak_mb": {k: round(v, 1) for k, v in rss.peak.items()},
                                 "drain_seconds": drained}

            # --- recovery ------------------------------------------------------------------------
            out["recovery"] = []
            for role in ("api", "wwebjs"):
                log(f"fleet: kill -9 {role}")
                out["recovery"].append(_kill_and_watch(orchestrator, role))
                orchestrator.wait_healthy(["api", "wwebjs", "meta"], timeout=180)
            log("fleet: kill -9 meta with a job in flight")
            out["recovery"].append(_meta_in_flight(orchestrator, emulator, database_url, redis_url, api_key))
            out["supervision"] = "product defaults (API/WWEBJS/META_RESTART_DELAY 2000/5000/3000 ms, " \
                                 "HEARTBEAT_INTERVAL 10000 ms, MAX_HEARTBEAT_AGE 60000 ms)"
        finally:
            if orchestrator is not None:
                with contextlib.suppress(Exception):  # cleanup below kills whatever is left
                    orchestrator.stop(timeout=60)
                orchestrator.cleanup()
            if sandbox is not None:
                sandbox.proc.kill_tree()
            emulator.close()
    return out


async def _web_company(database_url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", WEB_COMPANY)
    finally:
        await conn.close()
    return await company_key(database_url, WEB_COMPANY)
