"""Overload: open-loop POSTs well above one api process's saturation — answered fast, 202 or 503.

One ``bisnesgpt run api`` (``ADMISSION_POOL_WAIT`` and ``ADMISSION_MAX_LOOP_LAG`` at their
defaults, ``ADMISSION_MAX_IN_FLIGHT`` 8). First its closed-loop saturation throughput, then an open loop
(no coordinated omission: latency from each request's scheduled start) at ``factors`` times that
rate. For each: p99 of all answers and of the 202s and 503s apart, the refused count and share,
the refusals the process counted in ``/metrics``, and the rows written during the window
against the 202s (a refused send writes nothing: rows == 202s). The generator's CPU is
reported so a run shows whether it, not the API, was the limit.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from bench import seed
from bench.accept import start_api
from bench.system import PidSource, Servers, free_port, run_load, run_sql, scenario_storage, storage_pids

# ADMISSION_MAX_IN_FLIGHT of the run (off by default): the value the README recommends for tails.
IN_FLIGHT = 8
REFUSAL_COUNTERS = ("bisnesgpt_sends_refused_total", "bisnesgpt_pool_admission_refused_total")


def refusals_counted(base: str) -> int:
    """The process's refusal counters (loop lag, in flight, pool) summed, from ``/metrics``."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.split("{", 1)[0] in REFUSAL_COUNTERS:
            total += float(value)
    return int(total)


def stored(database_url: str) -> int:
    return int(run_sql(database_url, "SELECT count(*) AS n FROM messages")[0]["n"])


def window(base: str, database_url: str, shapes: list[dict[str, Any]], *, rate: float, duration: float,
           connections: int, pids: dict[str, PidSource], workdir: Path) -> dict[str, Any]:
    rows0, refused0 = stored(database_url), refusals_counted(base)
    run = run_load(base, shapes, connections=connections, duration=duration, rate=rate, cpu_pids=pids,
                   workdir=workdir).public()
    rows, refused_metric = stored(database_url) - rows0, refusals_counted(base) - refused0
    accepted, refused = run["statuses"].get("202", 0), run["statuses"].get("503", 0)
    answered = run["requests"] or 1
    return {**run, "accepted": accepted, "refused": refused, "refused_pct": round(100 * refused / answered, 1),
            "refused_in_metrics": refused_metric, "rows_written": rows,
            # Connection errors are neither: a request cut off may or may not have committed.
            "refused_wrote_nothing": accepted <= rows <= accepted + run["errors"]}


def run(servers: Servers, workdir: Path, *, duration: float, connections: int, factors: tuple[float, ...],
        log: Any) -> dict[str, Any]:
    with scenario_storage(servers) as (database_url, redis_url):
        api_key = seed.seed_meta_tenant(database_url)
        port = free_port()
        in_flight = IN_FLIGHT
        procs = start_api(workdir, database_url, redis_url, instances=1, server="uvicorn", port=port,
                          in_flight=in_flight)
        try:
            base = f"http://127.0.0.1:{port}"
            pids: dict[str, PidSource] = {"api-0": procs[0].pid}
            pids.update(storage_pids(servers, database_url))
            post = seed.text_shapes(base, api_key)
            # As many connections as the gate admits: the closed loop then finds the capacity; more
            # would be refused and retried at once, a load no real client fleet offers.
            log("overload: saturation POST text (closed loop)")
            saturation = run_load(base, post, connections=in_flight, duration=duration, cpu_pids=pids,
                                  workdir=workdir).public()
            out: dict[str, Any] = {"admission_max_in_flight": in_flight, "saturation": saturation, "windows": []}
            for factor in factors:
                # The 202s' rate: under a closed loop the fast 503s of the gates would inflate it.
                rate = saturation["statuses"].get("202", 0) / saturation["duration"] * factor
                log(f"overload: open loop at {factor} x saturation ({rate:.0f}/s)")
                result = window(base, database_url, post, rate=rate, duration=duration, connections=connections,
                                pids=pids, workdir=workdir)
                out["windows"].append({"factor": factor, **result})
        finally:
            for proc in procs:
                proc.close()
    return out
