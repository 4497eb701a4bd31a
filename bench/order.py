"""Per-chat order's cost: many chats ordered against unordered (ABBA), and messages/s to one chat.

One system (``bisnesgpt start``: api + meta, wwebjs off) against the Cloud API emulator,
seeded like the e2e section (4 Meta phones, pacing out of the way) but with
``CHATS_PER_PHONE`` recipients per phone. Rounds alternate ordered / unordered / unordered /
ordered (ABBA, so a drift of the machine during the run weighs on both alike): each is a
closed-loop saturation of ``POST /api/v2/messages/text`` over every chat, the body with
``"ordered": false`` in the unordered rounds; the figure is what reached the emulator inside
the window, per second. The backlog is drained before the next round. The ratio
ordered / unordered is the cost of order across many chats (goal: within 10 %).

Then one chat: a burst to a single recipient (ordered), and the rate its messages reach the
emulator — one at a time, each after the one before it was sent, so bounded by the round
trip to the provider and back through the database and the queue.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any

from tests.support.meta import EmulatorProc
from tests.support.orchestrator import OrchestratorRun

from bench import seed
from bench.e2e import receipts, start_orchestrator, wait_drained
from bench.system import PidSource, Servers, run_load, run_sql, scenario_storage, storage_pids

CHATS_PER_PHONE = 50
CONTACTS = tuple(f"601240{n:05d}" for n in range(CHATS_PER_PHONE))
SINGLE_CHAT = "60124199999"  # not among the many chats: its messages are only the one-chat figure's
ROUNDS = ("ordered", "unordered", "unordered", "ordered")


def shapes(api_url: str, api_key: str, contacts: tuple[str, ...], *, ordered: bool,
           phones: int = seed.PHONES) -> list[dict[str, Any]]:
    """One POST per (phone, recipient); ``"ordered": false`` in the body of an unordered round."""
    headers = {"Authorization": f"Bearer {api_key}"}
    extra = {} if ordered else {"ordered": False}
    return [{"method": "POST", "url": f"{api_url}/api/v2/messages/text/{seed.COMPANY}/{contact}",
             "body": json.dumps({"message": "order-bench", "phoneIndex": phone, **extra}), "headers": headers}
            for contact in contacts for phone in range(phones)]


def delivered_rate(emulator: EmulatorProc, started: float, seconds: float) -> tuple[int, float]:
    """Sends the emulator accepted inside [started, started + seconds), and per second."""
    count = sum(1 for ts in receipts(emulator).values() if started <= ts < started + seconds)
    return count, round(count / seconds, 1)


def run(servers: Servers, workdir: Path, *, duration: float, connections: int, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"chats": len(CONTACTS) * seed.PHONES, "phones": seed.PHONES, "rounds": []}
    with scenario_storage(servers) as (database_url, redis_url):
        api_key = seed.seed_meta_tenant(database_url, contacts=(*CONTACTS, SINGLE_CHAT))
        emulator = EmulatorProc(workdir, phones=seed.emulator_phones(), extra=seed.EMULATOR_ARGS,
                                name="order-emulator")
        orchestrator: OrchestratorRun | None = None
        try:
            (workdir / "order").mkdir(exist_ok=True)
            orchestrator = start_orchestrator(workdir / "order", database_url, redis_url, ENABLE_WWEBJS="false",
                                              META_GRAPH_URL=emulator.url, **seed.PACING_ENV)
            orchestrator.wait_healthy(["api", "meta"], timeout=120)
            kids = orchestrator.children()
            pids: dict[str, PidSource] = {"api": kids["api"].pid, "meta": kids["meta"].pid,
                                          "emulator": emulator.proc.pid}
            pids.update(storage_pids(servers, database_url))
            base = orchestrator.url("api", "")
            by_mode = {mode: shapes(base, api_key, CONTACTS, ordered=mode == "ordered") for mode in set(ROUNDS)}

            # Warm up both paths (connections, caches, the JIT-less interpreter's first calls), uncounted.
            for mode in ("unordered", "ordered"):
                run_load(base, by_mode[mode], connections=connections, duration=max(1.0, duration / 4),
                         workdir=workdir)
                wait_drained(database_url, timeout=600)
            for index, mode in enumerate(ROUNDS, start=1):
                log(f"order: round {index}/{len(ROUNDS)} {mode}, {out['chats']} chats (closed loop)")
                load = run_load(base, by_mode[mode], connections=connections, duration=duration, cpu_pids=pids,
                                workdir=workdir)
                drain = wait_drained(database_url, timeout=600)
                count, rate = delivered_rate(emulator, load.started_at, load.duration)
                out["rounds"].append({"mode": mode, "delivered_in_window": count, "delivered_rate": rate,
                                      "accepted_rate": load.throughput, "drain_seconds": drain,
                                      "server_cores": load.server_cores})
            ordered = [r["delivered_rate"] for r in out["rounds"] if r["mode"] == "ordered"]
            unordered = [r["delivered_rate"] for r in out["rounds"] if r["mode"] == "unordered"]
            out["ordered_rate"], out["unordered_rate"] = round(mean(ordered), 1), round(mean(unordered), 1)
            out["ratio_ordered_unordered"] = (round(out["ordered_rate"] / out["unordered_rate"], 3)
                                              if out["unordered_rate"] else None)

            burst = max(1.0, min(duration, 2.0))
            log(f"order: one chat, a {burst:.0f} s burst (closed loop, 4 connections)")
            single = shapes(base, api_key, (SINGLE_CHAT,), ordered=True, phones=1)
            load = run_load(base, single, connections=4, duration=burst, workdir=workdir)
            drain = wait_drained(database_url, timeout=900)
            times = sorted(ts for ts in receipts(emulator).values() if ts >= load.started_at)
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 10 else None
            accepted = run_sql(database_url, "SELECT count(*) AS n FROM messages WHERE chat_id = $1",
                               f"{SINGLE_CHAT}@c.us")[0]["n"]
            out["single_chat"] = {"accepted": accepted, "received_after_warmup": len(times),
                                  "messages_per_second": round(rate, 1) if rate else None,
                                  "round_trip_ms": round(1000 / rate, 2) if rate else None,
                                  "drain_seconds": drain}
            out["finished_at"] = datetime.now().isoformat(timespec="seconds")
        finally:
            if orchestrator is not None:
                with contextlib.suppress(Exception):
                    orchestrator.stop(timeout=60)
                orchestrator.cleanup()
            emulator.close()
    return out
