"""The durable floor: the least work any durable gateway must do per message, written plainly.

Two processes with the libraries the product uses (uvicorn, asyncpg, bullmq, httpx) and
nothing else — no framework validation, authentication, history, events, pacing or
idempotency:

- ``api``: a raw ASGI handler that parses the JSON body, commits one row (``INSERT …
  RETURNING``, one statement, autocommit) and adds one BullMQ job, then answers 202;
- ``worker``: a stock bullmq worker (concurrency 10, like meta's) that marks the row
  ``sending``, POSTs the message to the Cloud API emulator, and marks it ``sent`` with the
  wamid.

The product's end-to-end figure and CPU per delivered message are reported as ratios to
this one, measured in the same run with the same load generator, request shapes, emulator
and servers (``python -m bench --sections e2e,floor``).

Run by hand: ``python -m bench.floor api --port 8099 --database-url … --redis-url …`` and
``python -m bench.floor worker --database-url … --redis-url … --graph-url …``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import seed
from bench.system import PidSource, Servers, Spawned, run_load, run_sql, scenario_storage, storage_pids, wait_for

QUEUE = "floor-messages"
GRAPH_VERSION = "v23.0"
SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_messages (
    id          bigserial PRIMARY KEY,
    company_id  text NOT NULL,
    phone_index integer NOT NULL,
    recipient   text NOT NULL,
    body        text NOT NULL,
    status      text NOT NULL DEFAULT 'queued',
    external_id text,
    created_at  timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = ("INSERT INTO floor_messages (company_id, phone_index, recipient, body) "
          "VALUES ($1, $2, $3, $4) RETURNING id")
MARK_SENDING = "UPDATE floor_messages SET status = 'sending' WHERE id = $1"
MARK_SENT = "UPDATE floor_messages SET status = 'sent', external_id = $2 WHERE id = $1"
UNFINISHED = "SELECT count(*) AS n FROM floor_messages WHERE status <> 'sent'"


# --- the floor's two processes ------------------------------------------------------------------


def _redis_options(redis_url: str) -> dict[str, Any]:
    from bisnesgpt.infra.redis import connection_kwargs

    return {"connection": connection_kwargs(redis_url)}


class FloorApi:
    """The ASGI app: ``POST /api/v2/messages/text/{company}/{recipient}`` → one row, one job, 202."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.pool: asyncpg.Pool | None = None
        self.queue: Any = None

    async def _startup(self) -> None:
        from bullmq import Queue

        self.pool = await asyncpg.create_pool(self.database_url, min_size=4, max_size=10)
        await self.pool.execute(SCHEMA)
        self.queue = Queue(QUEUE, _redis_options(self.redis_url))

    async def _shutdown(self) -> None:
        if self.queue is not None:
            await self.queue.close()
        if self.pool is not None:
            await self.pool.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self._startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self._shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        parts = scope["path"].strip("/").split("/")
        if scope["method"] != "POST" or len(parts) != 6 or parts[:4] != ["api", "v2", "messages", "text"]:
            await _answer(send, 200 if scope["path"] == "/health" else 404, b"{}")
            return
        data = json.loads(body)
        assert self.pool is not None
        message_id = await self.pool.fetchval(INSERT, parts[4], int(data.get("phoneIndex", 0)), parts[5],
                                              str(data["message"]))
        await self.queue.add("send", {"id": message_id, "phone": int(data.get("phoneIndex", 0)), "to": parts[5],
                                      "body": str(data["message"])},
                             {"jobId": str(message_id), "removeOnComplete": True, "attempts": 3})
        await _answer(send, 202, json.dumps({"messageId": message_id, "status": "queued"}).encode())


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_api(port: int, database_url: str, redis_url: str) -> None:
    """The floor's HTTP process (uvicorn with uvloop and httptools, one worker, like the product's api)."""
    import uvicorn

    uvicorn.run(FloorApi(database_url, redis_url), host="127.0.0.1", port=port, log_level="warning",
                loop="uvloop", http="httptools", lifespan="on")


async def run_worker(database_url: str, redis_url: str, graph_url: str, token: str) -> None:
    """The floor's sending process: job → ``sending`` → POST to the Cloud API → ``sent``."""
    from bullmq import Worker

    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
    client = httpx.AsyncClient(base_url=graph_url, timeout=30, headers={"Authorization": f"Bearer {token}"},
                               limits=httpx.Limits(max_connections=20, max_keepalive_connections=20))

    async def process(job: Any, _token: str) -> None:
        data = job.data
        await pool.execute(MARK_SENDING, data["id"])
        response = await client.post(f"/{GRAPH_VERSION}/{seed.phone_number_id(data['phone'])}/messages",
                                     json={"messaging_product": "whatsapp", "recipient_type": "individual",
                                           "to": data["to"], "type": "text", "text": {"body": data["body"]}})
        response.raise_for_status()
        await pool.execute(MARK_SENT, data["id"], response.json()["messages"][0]["id"])

    worker = Worker(QUEUE, process, {**_redis_options(redis_url), "concurrency": 10, "autorun": False})
    # Without the server version bullmq rounds delays to whole seconds.
    await worker.backend.blocking_connection.getRedisVersion()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(worker.run())
    await stop.wait()
    await worker.close()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await client.aclose()
    await pool.close()


# --- the measurement ----------------------------------------------------------------------------


def _spawn(role: str, workdir: Path, *args: str) -> Spawned:
    from tests.support.procs import clean_env

    return Spawned([sys.executable, "-m", "bench.floor", role, *args], cwd=workdir,
                   env=clean_env(PYTHONPATH=str(Path(__file__).resolve().parents[1])), log_name=f"floor-{role}")


def run(servers: Servers, workdir: Path, *, duration: float, connections: int, log: Any,
        steady_rate: float | None = None) -> dict[str, Any]:
    """Saturate the floor with the e2e section's load; its delivered rate and CPU per message.

    With ``steady_rate`` (the e2e section's 50 % rate), also an open loop at that rate, which both
    deliver as it comes (no backlog): CPU per message without the accept work of messages still
    queued at a saturation window's end, which the saturation figure charges to those delivered.
    """
    from tests.support.meta import EmulatorProc
    from tests.support.procs import free_port

    from bench.e2e import receipts

    out: dict[str, Any] = {}
    with scenario_storage(servers) as (database_url, redis_url):
        emulator = EmulatorProc(workdir, phones=seed.emulator_phones(), extra=seed.EMULATOR_ARGS,
                                name="floor-emulator")
        port = free_port()
        api = _spawn("api", workdir, "--port", str(port), "--database-url", database_url, "--redis-url", redis_url)
        worker = _spawn("worker", workdir, "--database-url", database_url, "--redis-url", redis_url,
                        "--graph-url", emulator.url, "--token", seed.TOKEN)
        try:
            base = f"http://127.0.0.1:{port}"
            from bench.system import http_status

            wait_for(lambda: http_status(f"{base}/health") == 200, timeout=60, what="floor api", proc=api)
            pids: dict[str, PidSource] = {"api": api.pid, "worker": worker.pid, "emulator": emulator.proc.pid}
            pids.update(storage_pids(servers, database_url))
            log("floor: saturation (closed loop), the same shapes as e2e")
            sat = run_load(base, seed.text_shapes(base, "unused"), connections=connections, duration=duration,
                           cpu_pids=pids, workdir=workdir)
            drained = _wait_drained(database_url, timeout=300)
            got = receipts(emulator)
            t0, t1 = sat.started_at, sat.started_at + sat.duration
            delivered = sum(1 for ts in got.values() if t0 <= ts < t1)
            sustained = delivered / sat.duration
            per_message = {name: round(cores * 1000 / sustained, 2) for name, cores in sat.server_cores.items()
                           if name != "machine"} if sustained else {}
            out = {"load": sat.public(), "delivered_in_window": delivered, "sustained_rate": round(sustained, 1),
                   "backlog_drain_seconds": drained, "cpu_ms_per_delivered_message": per_message,
                   "all_sent": run_sql(database_url, UNFINISHED)[0]["n"] == 0}
            if steady_rate:
                log(f"floor: steady open loop at the e2e 50 % rate ({steady_rate:.0f}/s)")
                steady = run_load(base, seed.text_shapes(base, "unused"), connections=connections,
                                  duration=duration, rate=steady_rate, cpu_pids=pids, workdir=workdir)
                out["steady"] = {"load": steady.public(), "drain_seconds": _wait_drained(database_url, timeout=300),
                                 "cpu_ms_per_message": steady_cpu_per_message(steady.public())}
            out["finished_at"] = datetime.now().isoformat(timespec="seconds")
        finally:
            worker.close()
            api.close()
            emulator.close()
    return out


def _wait_drained(database_url: str, timeout: float) -> float:
    started = time.monotonic()
    while run_sql(database_url, UNFINISHED)[0]["n"] > 0 and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return round(time.monotonic() - started, 2)


def compare(e2e: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """Product / floor: sustained throughput, and summed CPU per delivered message (emulator excluded)."""
    def summed(section: dict[str, Any]) -> float:
        per = section.get("cpu_ms_per_delivered_message") or {}
        return sum(v for k, v in per.items() if k not in ("emulator", "orchestrator"))

    product_rate, floor_rate = e2e["saturation"]["sustained_rate"], floor["sustained_rate"]
    product_cpu, floor_cpu = summed(e2e["saturation"]), summed(floor)
    out: dict[str, Any] = {
        "throughput_ratio": round(product_rate / floor_rate, 3) if floor_rate else None,
        "cpu_per_message_ratio": round(product_cpu / floor_cpu, 2) if floor_cpu else None,
        "product_cpu_ms": round(product_cpu, 2), "floor_cpu_ms": round(floor_cpu, 2)}
    if "steady" in floor:
        steady_product = sum(steady_cpu_per_message(e2e["half_load"]["load"]).values())
        steady_floor = sum(floor["steady"]["cpu_ms_per_message"].values())
        out.update({"steady_rate": e2e["half_load"]["offered_rate"], "steady_product_cpu_ms": round(steady_product, 2),
                    "steady_floor_cpu_ms": round(steady_floor, 2),
                    "steady_cpu_per_message_ratio": round(steady_product / steady_floor, 2) if steady_floor else None})
    return out


def steady_cpu_per_message(load: dict[str, Any]) -> dict[str, float]:
    """CPU ms per message of each process (emulator, orchestrator and machine left out) at an open-loop
    rate delivered as it comes: its cores over the rate answered."""
    rate = load["throughput"]
    return {name: round(cores * 1000 / rate, 2) for name, cores in load["server_cores"].items()
            if name not in ("emulator", "orchestrator", "machine")} if rate else {}


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.floor api|worker …``: one of the floor's two processes."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("role", choices=("api", "worker"))
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--graph-url", default="")
    parser.add_argument("--token", default=seed.TOKEN)
    args = parser.parse_args(argv)
    if args.role == "api":
        serve_api(args.port, args.database_url, args.redis_url)
    else:
        import uvloop

        uvloop.run(run_worker(args.database_url, args.redis_url, args.graph_url, args.token))


if __name__ == "__main__":
    main()
