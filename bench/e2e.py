"""End-to-end, Meta path: accept → Cloud API emulator receipt, against raw BullMQ no-op processing.

The system runs under the real orchestrator (``bisnesgpt start``; api + meta, wwebjs off)
with the Cloud API emulator as "Meta" (status webhooks off: the figure ends at the
receipt). Latency of one message = the emulator's record timestamp of the send request
(``/_emulator/requests``, ``ts``) minus the API's accept time (``messages.created_at``, set
by the accepting transaction), joined on the wamid (``messages.external_id``). Same clock:
one machine.

1. anchors: a no-op ``bullmq`` worker (Python, concurrency 10 like the meta queue) and,
   with ``node``, Node BullMQ — on the same Redis, in the same run; and the cost of the
   worker's fetch loop (``moveToActive`` calls and CPU per job) with meta's 310 slots,
   bullmq's stock loop against the product's sequential one;
2. saturation: closed-loop POSTs; the sustained rate is what reached the emulator inside
   the measured window (a backlog left behind is drained and reported);
3. 50 % of that, open loop: p50/p99/p99.9 accept → receipt for every message of the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.meta import EmulatorProc
from tests.support.orchestrator import FAST_TIMINGS, OrchestratorRun

from bench import anchors, seed
from bench.profile import Profiles
from bench.system import (
    PidSource,
    RssSampler,
    Servers,
    latency_summary,
    rss_mb,
    run_load,
    run_sql,
    scenario_storage,
    storage_pids,
)

# Meta's worker: META_SEND_CONCURRENCY 10 + META_PACING_HOLD_JOBS 300 slots; a steady trickle.
FETCH_SLOTS = 310
FETCH_RATE = 25.0
UNFINISHED = "SELECT count(*) AS n FROM messages WHERE status IN ('queued', 'sending')"
WINDOW_ROWS = """
SELECT external_id, extract(epoch FROM created_at)::float8 AS accepted, status FROM messages
WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2)
"""


def start_orchestrator(workdir: Path, database_url: str, redis_url: str, **env: str) -> OrchestratorRun:
    """The real orchestrator with the product's default supervision settings (no test timings)."""
    run = OrchestratorRun(workdir, database_url=database_url, redis_url=redis_url, **env)
    for key in FAST_TIMINGS:
        if key not in env:
            run.env.pop(key, None)
    return run.start()


def wait_drained(database_url: str, timeout: float) -> float:
    """Seconds until no message is queued/sending (the backlog is gone)."""
    started = time.monotonic()
    while run_sql(database_url, UNFINISHED)[0]["n"] > 0:
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.2)
    return round(time.monotonic() - started, 2)


def receipts(emulator: EmulatorProc) -> dict[str, float]:
    """wamid → the emulator's timestamp of the accepted send request."""
    return {r["wamid"]: float(r["ts"]) for r in emulator.requests(operation="send")
            if r.get("http_status") == 200 and r.get("wamid")}


def run(servers: Servers, workdir: Path, *, duration: float, connections: int, anchor_jobs: int, node: bool,
        log: Any, profile_dir: Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with scenario_storage(servers) as (database_url, redis_url):
        api_key = seed.seed_meta_tenant(database_url)
        emulator = EmulatorProc(workdir, phones=seed.emulator_phones(), extra=seed.EMULATOR_ARGS, name="e2e-emulator")
        orchestrator: OrchestratorRun | None = None
        try:
            (workdir / "e2e").mkdir(exist_ok=True)
            orchestrator = start_orchestrator(workdir / "e2e", database_url, redis_url, ENABLE_WWEBJS="false",
                                              META_GRAPH_URL=emulator.url, **seed.PACING_ENV)
            orchestrator.wait_healthy(["api", "meta"], timeout=120)
            kids = orchestrator.children()
            pids: dict[str, PidSource] = {"api": kids["api"].pid, "meta": kids["meta"].pid,
                                          "emulator": emulator.proc.pid, "orchestrator": orchestrator.pid}
            pids.update(storage_pids(servers, database_url))
            base = orchestrator.url("api", "")
            shapes = seed.text_shapes(base, api_key)
            out["pacing"] = {
                "phones": seed.PHONES, "recipients_per_phone": len(seed.CONTACTS),
                "phone_messages_per_second": seed.PHONE_RATE, "pair_interval_ms": 0,
                "meta_max_messages_per_second": seed.PROCESS_RATE,
                "emulator_messages_per_second_per_phone": seed.EMULATOR_PHONE_RATE,
                "meta_send_concurrency": "default (10)", "status_webhooks": "off",
            }

            # --- anchors, same Redis, same run -----------------------------------------------------
            log(f"e2e: anchor python bullmq no-op ({anchor_jobs} jobs)")
            py = asyncio.run(anchors.python_noop(redis_url, anchor_jobs))
            out["anchor_python_bullmq"] = {"jobs": py.jobs, "seconds": round(py.seconds, 3),
                                           "rate": round(py.rate, 1), "latency_ms": latency_summary(py.latencies_ms)}
            if node and anchors.node_available():
                log(f"e2e: anchor node bullmq no-op ({anchor_jobs} jobs)")
                nd = anchors.node_noop(redis_url, anchor_jobs)
                assert nd is not None
                out["anchor_node_bullmq"] = {"jobs": nd.jobs, "seconds": round(nd.seconds, 3),
                                             "rate": round(nd.rate, 1), "latency_ms": latency_summary(nd.latencies_ms)}
            else:
                out["anchor_node_bullmq"] = None

            # The worker's fetch loop, bullmq's stock one against ours, as meta runs it (310 slots).
            log("e2e: worker fetch cost, stock bullmq loop vs the product's")
            costs = [asyncio.run(anchors.fetch_cost(redis_url, ours=ours, rate=FETCH_RATE, seconds=duration,
                                                    concurrency=FETCH_SLOTS)) for ours in (False, True)]
            out["fetch_cost"] = {"rate": FETCH_RATE, "slots": FETCH_SLOTS, "runs": [
                {"loop": c.loop, "jobs": c.jobs, "move_to_active": c.fetches,
                 "per_job": round(c.fetches_per_job, 2), "cores": round(c.cores, 3)} for c in costs]}
            stock, ours_cost = costs
            out["fetch_cost"]["cpu_ratio"] = round(ours_cost.cores / stock.cores, 2) if stock.cores else None

            idle = {name: rss_mb(proc.pid) for name, proc in kids.items()}

            # --- saturation --------------------------------------------------------------------------
            log("e2e: saturation (closed loop)")
            with RssSampler({"api": kids["api"].pid, "meta": kids["meta"].pid}) as rss, \
                    Profiles(profile_dir, {"api": kids["api"].pid, "meta": kids["meta"].pid}, "e2e") as profiles:
                sat = run_load(base, shapes, connections=connections, duration=duration, cpu_pids=pids,
                               workdir=workdir)
            if profile_dir is not None:
                out["profile"] = profiles.summary()
            drain = wait_drained(database_url, timeout=300)
            got = receipts(emulator)
            t0, t1 = sat.started_at, sat.started_at + sat.duration
            delivered = sum(1 for ts in got.values() if t0 <= ts < t1)
            sustained = delivered / sat.duration
            # The backlog left at the window's end, drained by meta with the API idle: the
            # engine's own processing rate (comparable to the no-op anchor, also a drain).
            after = sorted(ts for ts in got.values() if ts >= t1)
            drain_rate = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 100 else None
            per_message = {name: round(cores * 1000 / sustained, 2) for name, cores in sat.server_cores.items()
                           if name not in ("machine", "orchestrator")} if sustained else {}
            out["saturation"] = {"load": sat.public(), "delivered_in_window": delivered,
                                 "sustained_rate": round(sustained, 1), "backlog_drain_seconds": drain,
                                 "backlog": len(after), "meta_drain_rate": round(drain_rate, 1) if drain_rate else None,
                                 "cpu_ms_per_delivered_message": per_message,
                                 "rss_peak_mb": rss.peak, "rss_idle_mb": idle}

            # --- 50 % load ---------------------------------------------------------------------------
            rate = max(1.0, sustained / 2)
            log(f"e2e: 50 % load (open loop, {rate:.0f}/s)")
            half = run_load(base, shapes, connections=connections, duration=duration, rate=rate, cpu_pids=pids,
                            workdir=workdir)
            drain_half = wait_drained(database_url, timeout=120)
            got = receipts(emulator)
            rows = run_sql(database_url, WINDOW_ROWS, half.started_at, half.started_at + half.duration + 5)
            latencies = [(got[r["external_id"]] - r["accepted"]) * 1000 for r in rows if r["external_id"] in got]
            statuses: dict[str, int] = {}
            for row in rows:
                statuses[row["status"]] = statuses.get(row["status"], 0) + 1
            window_end = half.started_at + half.duration
            in_window = sum(1 for ts in got.values() if half.started_at <= ts < window_end)
            out["half_load"] = {"load": half.public(), "offered_rate": round(rate, 1),
                                "messages": len(rows), "received_by_emulator": len(latencies),
                                "statuses": statuses, "delivered_rate": round(in_window / half.duration, 1),
                                "latency_ms": latency_summary(latencies), "drain_seconds": drain_half,
                                "accepted_202": half.statuses.get("202", 0)}
            out["ratio_python"] = round(sustained / py.rate, 3) if py.rate else None
            out["ratio_python_drain"] = round(drain_rate / py.rate, 3) if drain_rate and py.rate else None
            node_rate = (out["anchor_node_bullmq"] or {}).get("rate")
            out["ratio_node"] = round(sustained / node_rate, 3) if node_rate else None
            out["finished_at"] = datetime.now().isoformat(timespec="seconds")
        finally:
            if orchestrator is not None:
                with contextlib.suppress(Exception):  # cleanup below kills whatever is left
                    orchestrator.stop(timeout=60)
                orchestrator.cleanup()
            emulator.close()
    return out
