"""``python -m bench`` (``make bench``): run the benchmarks, print the table, write JSON.

Sections: ``accept``, ``e2e``, ``floor`` (the durable floor, ``bench/floor.py``: the product's
e2e figures as ratios to it), ``order`` (per-chat order: many chats ordered vs unordered,
ABBA, and one chat), ``pacing`` (achieved rate against a phone's limit), ``fleet``
(footprint and recovery under the orchestrator), ``spread`` (sessions over many wwebjs
processes: sessions and RSS per process and session, time to re-home an owner's sessions),
``media`` (inbound media pipeline latency and RSS while large files stream through),
``stream`` (WebSocket event fan-out), ``overload`` (open loop at 1.5x and 3x one api's
saturation: p99 of 202s and 503s, refused share, nothing refused stored).
``--quick`` shrinks every duration (a harness check, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import accept, e2e, fleet, floor, media, order, overload, pacing, profile, spread
from bench.report import render
from bench.system import REPO, machine_info, open_servers

SECTIONS = ("accept", "e2e", "floor", "order", "pacing", "fleet", "spread", "media", "stream", "overload")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each measured load window")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections of the generator")
    parser.add_argument("--anchor-jobs", type=int, default=5000, help="jobs of each BullMQ no-op anchor")
    parser.add_argument("--sessions", default="1,10,50", help="sandbox session counts for the wwebjs footprint")
    parser.add_argument("--spread-processes", type=int, default=4, help="wwebjs processes of the spread section")
    parser.add_argument("--spread-sessions", default="100,500,1000", help="session counts spread over them")
    parser.add_argument("--rehome", type=int, default=100, help="sessions of the owner killed in the spread section")
    parser.add_argument("--no-granian", action="store_true", help="skip the granian comparison")
    parser.add_argument("--no-node", action="store_true", help="skip the Node BullMQ anchor")
    parser.add_argument("--media-files", type=int, default=20, help="inbound documents of the media section")
    parser.add_argument("--media-mb", type=int, default=50, help="size of each, in MB")
    parser.add_argument("--ws-clients", type=int, default=100, help="WebSocket clients of the stream section")
    parser.add_argument("--ws-events", type=int, default=500, help="events the stream section commits")
    parser.add_argument("--quick", action="store_true", help="tiny durations: prove the harness works")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="directory for the JSON")
    parser.add_argument("--profile", type=Path, default=None,
                        help="directory for py-spy profiles of api and meta under the e2e saturation load")
    parser.add_argument("--keep-workdir", action="store_true", help="keep process logs after the run")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    if args.quick:
        args.duration, args.anchor_jobs, args.sessions = 1.0, 300, "1,2"
        args.no_node, args.no_granian = True, True
        args.media_files, args.media_mb, args.ws_clients, args.ws_events = 3, 2, 10, 20
        args.spread_processes, args.spread_sessions, args.rehome = 2, "4,6", 4
    if args.profile is not None and not profile.available():
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    session_counts = tuple(int(n) for n in args.sessions.split(","))

    workdir = Path(tempfile.mkdtemp(prefix="bisnesgpt-bench-"))
    results: dict[str, Any] = {
        "started_at": datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
        "settings": {"duration_s": args.duration, "connections": args.connections, "anchor_jobs": args.anchor_jobs,
                     "sessions": list(session_counts), "quick": args.quick, "sections": sections},
    }
    servers = open_servers(workdir)
    results["servers"] = servers.source
    began = time.monotonic()
    try:
        if "accept" in sections:
            results["accept"] = accept.run(servers, workdir, duration=args.duration, connections=args.connections,
                                           instance_counts=(1, 2), granian=not args.no_granian, log=log)
        if "overload" in sections:
            results["overload"] = overload.run(servers, workdir, duration=args.duration,
                                               connections=args.connections, factors=(1.5, 3.0), log=log)
        if "e2e" in sections:
            results["e2e"] = e2e.run(servers, workdir, duration=args.duration, connections=args.connections,
                                     anchor_jobs=args.anchor_jobs, node=not args.no_node, log=log,
                                     profile_dir=args.profile)
        if "floor" in sections:
            steady = results["e2e"]["half_load"]["offered_rate"] if "e2e" in results else None
            results["floor"] = floor.run(servers, workdir, duration=args.duration, connections=args.connections,
                                         log=log, steady_rate=steady)
            if "e2e" in results:
                results["floor"]["product_vs_floor"] = floor.compare(results["e2e"], results["floor"])
        if "order" in sections:
            results["order"] = order.run(servers, workdir, duration=args.duration, connections=args.connections,
                                         log=log)
        if "pacing" in sections:
            results["pacing"] = pacing.run(servers, workdir, messages=200 if args.quick else 1000, log=log)
        if "fleet" in sections:
            results["fleet"] = fleet.run(servers, workdir, duration=args.duration, sessions=session_counts, log=log)
        if "spread" in sections:
            results["spread"] = spread.run(servers, workdir, processes=args.spread_processes,
                                           counts=tuple(int(n) for n in args.spread_sessions.split(",")),
                                           rehome=args.rehome, log=log)
        if "media" in sections:
            results["media"] = media.run_media(servers, workdir, files=args.media_files,
                                               size=args.media_mb * 1024 * 1024, log=log)
        if "stream" in sections:
            results["stream"] = media.run_stream(servers, workdir, clients=args.ws_clients, events=args.ws_events,
                                                 log=log)
    finally:
        servers.close()
        results["wall_seconds"] = round(time.monotonic() - began, 1)
        if args.keep_workdir:
            log(f"process logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
