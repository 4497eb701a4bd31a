"""Sessions spread over many wwebjs processes: footprint per process and session, and re-homing.

Real ``bisnesgpt run wwebjs`` processes (sandbox driver) against one ``bisnesgpt sandbox
wweb serve``, sharing the sessions through their leases and ``wwebjs_members`` rows, with
the product's default lease TTL (20 s) and the same-host shortcut (a dead pid's leases taken
at once) switched off, so every process behaves as if it ran on its own host.

Re-home: one process pairs ``rehome`` sessions alone and is frozen (SIGSTOP: from then on it
drives nothing, as a host that died); the other processes start and join, the frozen one is
killed (kill -9) once they are members, and the figure is the time from the freeze until
every one of those sessions is ``ready`` on another process (lease expiry plus start).

Footprint: with every process running, sessions are added up to each of ``counts``; for each,
sessions per process (its ``wwebjs_members`` row and the leases it holds), RSS per process
and per session (growth over the processes' idle RSS / sessions), and the balance (largest
deviation of a process's count from the mean, in %).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.support.wwebjs import RoleProc, SandboxNetwork, seed_phone, start_sandbox, start_wwebjs

from bench.system import Servers, rss_mb, run_sql, scenario_storage, wait_for

COMPANY = "bench-spread"
SPREAD_ENV = {
    "WWEBJS_START_CONCURRENCY": "20",
    "WWEBJS_START_STAGGER_MS": "0",
    "WWEBJS_RECONCILE_INTERVAL_MS": "1000",
    "WWEBJS_LEASE_TTL_SECONDS": "20",  # the product default, so re-homing is timed as in production
    "WWEBJS_LEASE_TAKEOVER_SAME_HOST": "false",  # every process as if on its own host
    "WWEBJS_HANDOFF_BATCH": "10",
    "HEARTBEAT_INTERVAL": "5000",
}
READY = "SELECT count(*) AS n FROM phone_status WHERE company_id = $1 AND status = 'ready'"
READY_NOT_ON = ("SELECT count(*) AS n FROM phone_status WHERE company_id = $1 AND status = 'ready' "
                "AND (metadata->>'pid')::int <> $2")
QR = "SELECT count(*) AS n FROM phone_status WHERE company_id = $1 AND status = 'qr'"
BY_PID = ("SELECT (metadata->>'pid')::int AS pid, count(*) AS n FROM phone_status "
          "WHERE company_id = $1 AND status = 'ready' GROUP BY 1")
MEMBERS = "SELECT count(*) AS n FROM wwebjs_members WHERE expires_at > now() AND NOT draining"


def _count(database_url: str, sql: str, *args: Any) -> int:
    return int(run_sql(database_url, sql, *args)[0]["n"])


async def _scan(sandbox: SandboxNetwork, indexes: list[int]) -> None:
    gate = asyncio.Semaphore(32)

    async def one(index: int) -> None:
        async with gate:
            await sandbox.scan(COMPANY, index, phone=f"6017{index:07d}")

    await asyncio.gather(*(one(i) for i in indexes))


def _pair(database_url: str, sandbox: SandboxNetwork, first: int, last: int, log: Any) -> float:
    """Seed phones ``first..last-1``, scan each QR; seconds from the last scan to all ``last`` ready."""
    new = list(range(first, last))

    async def seed_all() -> None:
        for index in new:
            await seed_phone(database_url, COMPANY, index)

    asyncio.run(seed_all())
    log(f"spread: {len(new)} new sessions, waiting for their QR codes")
    wait_for(lambda: _count(database_url, QR, COMPANY) >= len(new), timeout=600, interval=0.5,
             what=f"{len(new)} sessions showing a QR")
    asyncio.run(_scan(sandbox, new))
    return wait_for(lambda: _count(database_url, READY, COMPANY) >= last, timeout=600, interval=0.5,
                    what=f"{last} sessions ready")


def _start(workdir: Path, database_url: str, redis_url: str, sandbox: SandboxNetwork, name: str) -> RoleProc:
    return start_wwebjs(workdir, database_url, redis_url, sandbox.url, name=name, **SPREAD_ENV)


def _rehome(workdir: Path, database_url: str, redis_url: str, sandbox: SandboxNetwork, *, processes: int,
            sessions: int, log: Any) -> tuple[dict[str, Any], list[RoleProc]]:
    first = _start(workdir, database_url, redis_url, sandbox, "spread-0")
    log(f"spread: pairing {sessions} sessions on one process")
    _pair(database_url, sandbox, 0, sessions, log)
    time.sleep(2)  # a renewal or two, as in steady state
    frozen_at = time.monotonic()
    os.kill(first.pid, signal.SIGSTOP)
    log(f"spread: process {first.pid} frozen; starting {processes - 1} others")
    others = [_start(workdir, database_url, redis_url, sandbox, f"spread-{i}") for i in range(1, processes)]
    wait_for(lambda: _count(database_url, MEMBERS) >= processes, timeout=60, interval=0.2,
             what="the new processes are members")
    joined = time.monotonic() - frozen_at
    first.proc.signal(signal.SIGKILL)
    os.kill(first.pid, signal.SIGCONT)  # a stopped process dies of SIGKILL only once it runs again
    first.proc.wait(10)
    took = wait_for(lambda: _count(database_url, READY_NOT_ON, COMPANY, first.pid) >= sessions, timeout=180,
                    interval=0.1, what=f"{sessions} sessions ready elsewhere")
    by_pid = {int(r["pid"]): int(r["n"]) for r in run_sql(database_url, BY_PID, COMPANY)}
    return ({"sessions": sessions, "from_freeze_s": round(time.monotonic() - frozen_at, 2),
             "others_joined_after_s": round(joined, 2), "after_kill_s": round(took, 2),
             "lease_ttl_s": float(SPREAD_ENV["WWEBJS_LEASE_TTL_SECONDS"]),
             "sessions_per_process_after": sorted(by_pid.values(), reverse=True)}, others)


def _footprint(database_url: str, sandbox: SandboxNetwork, procs: list[RoleProc], *, have: int,
               counts: tuple[int, ...], idle: dict[int, float], log: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for count in counts:
        if count > have:
            log(f"spread: adding sessions up to {count}")
            _pair(database_url, sandbox, have, count, log)
            have = count
        mean = count / len(procs)
        wait_for(lambda m=mean: _balanced(database_url, procs, m), timeout=300, interval=1.0,
                 what=f"{count} sessions balanced over {len(procs)} processes")
        time.sleep(3)  # let allocations settle
        by_pid = {int(r["pid"]): int(r["n"]) for r in run_sql(database_url, BY_PID, COMPANY)}
        rss = {p.pid: rss_mb(p.pid) or 0.0 for p in procs}
        per = [by_pid.get(p.pid, 0) for p in procs]
        growth = sum(rss[p.pid] - idle[p.pid] for p in procs)
        rows.append({"sessions": count, "processes": len(procs), "sessions_per_process": per,
                     "balance_pct": round(max(abs(n - mean) for n in per) / mean * 100, 1),
                     "rss_mb_per_process": [round(rss[p.pid], 1) for p in procs],
                     "rss_mb_total": round(sum(rss.values()), 1),
                     "per_session_mb": round(growth / count, 3)})
        log(f"spread: {count} sessions: per process {per}, RSS {rows[-1]['rss_mb_per_process']} MB")
    return rows


def _balanced(database_url: str, procs: list[RoleProc], mean: float) -> bool:
    by_pid = {int(r["pid"]): int(r["n"]) for r in run_sql(database_url, BY_PID, COMPANY)}
    return sum(by_pid.values()) >= round(mean * len(procs)) and all(
        abs(by_pid.get(p.pid, 0) - mean) <= max(1.0, 0.05 * mean) for p in procs)


def run(servers: Servers, workdir: Path, *, processes: int, counts: tuple[int, ...], rehome: int,
        log: Any) -> dict[str, Any]:
    """The spread section: re-home ``rehome`` sessions, then the footprint at each of ``counts``."""
    stackdir = workdir / "spread"
    stackdir.mkdir(exist_ok=True)
    out: dict[str, Any] = {"processes": processes, "settings": dict(SPREAD_ENV)}
    with scenario_storage(servers) as (database_url, redis_url):
        sandbox = start_sandbox(stackdir, name="spread-sandbox", extra=["--keepalive-interval", "5",
                                                                        "--keepalive-timeout", "20"])
        procs: list[RoleProc] = []
        try:
            out["rehome"], procs = _rehome(stackdir, database_url, redis_url, sandbox, processes=processes,
                                           sessions=rehome, log=log)
            log(f"spread: {rehome} sessions re-homed in {out['rehome']['from_freeze_s']} s from the freeze")
            procs.append(_start(stackdir, database_url, redis_url, sandbox, f"spread-{processes}"))
            # Idle RSS of a process: what a fresh one with no sessions takes (the last one, before it has any).
            idle_one = rss_mb(procs[-1].pid) or 0.0
            idle = {p.pid: idle_one for p in procs}
            out["rss_mb_idle_process"] = round(idle_one, 1)
            out["by_count"] = _footprint(database_url, sandbox, procs, have=rehome, counts=counts, idle=idle, log=log)
        finally:
            for proc in procs:
                proc.proc.kill_tree()
            sandbox.proc.kill_tree()
    return out
