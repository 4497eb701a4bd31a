"""Inbound media and the live event stream, measured through spawned processes.

``media``: the Cloud API emulator sends inbound documents (webhook → meta's media-downloads
job → media store → ``GET /api/v1/media/{id}`` through the api), one after another; per
file the time from the emulator's webhook to ``stored`` and to fully fetched (sha256
checked), as p50/p99, and the peak RSS of the meta and api processes against their RSS
before the first file (flat = streaming: no file is held in memory). Each file is deleted
from the emulator once stored, so only the product's memory grows with file size.

``stream``: one api process, ``clients`` WebSocket clients of one company, ``events``
tenant events committed as fast as one connection can; the figure is deliveries per second
(events x clients over the time from the first commit to the last delivery) and each
delivery's latency from its commit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.meta import APP_SECRET, ENCRYPTION_KEY, EmulatorProc, MetaProc, add_meta_phone, meta_env
from tests.support.procs import free_port
from tests.support.webhooks import emit_inbound, new_company, spawn_api
from websockets.asyncio.client import connect

from bench.system import RssSampler, Servers, latency_summary, rss_mb, scenario_storage
from bisnesgpt.db.pool import Database

PHONE = "310000000000001"


def _ms(seconds: list[float]) -> dict[str, float | None]:
    return latency_summary([s * 1000 for s in seconds])


async def _media(database_url: str, redis_url: str, workdir: Path, files: int, size: int) -> dict[str, Any]:
    db = Database(database_url, max_size=4)
    await db.open()
    emulator = EmulatorProc(workdir, name="media-emulator")
    env = {"DATA_DIR": str(workdir / "data"), "MEDIA_DOWNLOAD_BACKOFF_MS": "200"}
    meta = MetaProc(workdir, meta_env(database_url, redis_url, free_port(), emulator.url, **env))
    api, base = spawn_api(workdir, database_url, redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY, **env)
    try:
        company, key = await new_company(db)
        emulator.add_phone(PHONE, access_token="bench-token")
        await add_meta_phone(db, company_id=company, phone_number_id=PHONE, token="bench-token")
        emulator.configure_webhooks(url=f"{meta.url}/webhook/meta", app_secret=APP_SECRET)
        pids = {"meta": meta.proc.pid, "api": api.pid}
        before = {name: rss_mb(pid) or 0.0 for name, pid in pids.items()}
        to_stored: list[float] = []
        to_fetched: list[float] = []
        async with httpx.AsyncClient(base_url=base, timeout=300, headers={"Authorization": f"Bearer {key}"}) as http:
            with RssSampler(pids, interval=0.1) as sampler:
                for n in range(files):
                    content = b"%PDF-1.7\n" + os.urandom(size - 9)
                    digest = hashlib.sha256(content).hexdigest()
                    body = {"phone_number_id": PHONE, "from": "60190001000", "type": "document",
                            "media_base64": base64.b64encode(content).decode(), "mime_type": "application/pdf",
                            "filename": f"doc-{n}.pdf"}
                    del content
                    injected = emulator.admin("POST", "/inbound", json=body)
                    del body
                    started = time.monotonic()
                    wamid = injected["message"]["id"]
                    media_provider_id = injected["message"]["document"]["id"]
                    row = None
                    while row is None or row["media_state"] == "pending" or row["media_state"] is None:
                        if time.monotonic() - started > 600:
                            raise TimeoutError(f"file {n} not stored after 600 s")
                        await asyncio.sleep(0.02)
                        row = await db.fetchrow("SELECT media_state, media_object_id FROM messages "
                                                "WHERE external_id = $1", wamid)
                    to_stored.append(time.monotonic() - started)
                    emulator.http.delete(f"/v23.0/{media_provider_id}",
                                         headers={"Authorization": "Bearer bench-token"})
                    fetched = hashlib.sha256()
                    async with http.stream("GET", f"/api/v1/media/{row['media_object_id']}") as response:
                        async for chunk in response.aiter_bytes():
                            fetched.update(chunk)
                    to_fetched.append(time.monotonic() - started)
                    if row["media_state"] != "stored" or fetched.hexdigest() != digest:
                        raise AssertionError(f"file {n}: {row['media_state']}, sha256 match "
                                             f"{fetched.hexdigest() == digest}")
        return {"files": files, "bytes_each": size, "webhook_to_stored_ms": _ms(to_stored),
                "webhook_to_fetched_ms": _ms(to_fetched),
                "rss_mb_before": {k: round(v, 1) for k, v in before.items()},
                "rss_mb_peak": {k: round(v, 1) for k, v in sampler.peak.items()},
                "rss_growth_mb": {k: round(sampler.peak.get(k, 0.0) - before[k], 1) for k in before}}
    finally:
        api.kill_tree()
        meta.close()
        emulator.close()
        await db.close()


async def _stream(database_url: str, redis_url: str, workdir: Path, clients: int, events: int) -> dict[str, Any]:
    db = Database(database_url, max_size=4)
    await db.open()
    api, base = spawn_api(workdir, database_url, redis_url, EVENT_STREAM_POLL_MS="100")
    try:
        company, key = await new_company(db)
        received: list[list[float]] = [[] for _ in range(clients)]
        committed: dict[str, float] = {}
        latencies: list[float] = []

        async def listen(index: int) -> None:
            async with connect(f"{base.replace('http', 'ws')}/api/v1/events/ws",
                               additional_headers={"Authorization": f"Bearer {key}"}, max_queue=None) as conn:
                ready.set()
                async for message in conn:
                    now = time.time()
                    received[index].append(now)
                    event_id = json.loads(message)["id"]
                    if event_id in committed:
                        latencies.append(now - committed[event_id])
                    if len(received[index]) >= events:
                        return

        tasks = []
        for index in range(clients):
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(listen(index)))
            await ready.wait()
        await asyncio.sleep(1.0)  # every subscription is in place before the first event
        first = time.time()
        for n in range(events):
            emitted = await emit_inbound(db, company, text=f"event {n}")
            committed[emitted.event_ids[0]] = emitted.committed_at
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
        last = max(max(times) for times in received)
        span = last - first
        return {"clients": clients, "events": events, "deliveries": clients * events,
                "seconds": round(span, 2), "deliveries_per_second": round(clients * events / span, 1),
                "commit_to_client_ms": _ms(latencies)}
    finally:
        api.kill_tree()
        await db.close()


def run_media(servers: Servers, workdir: Path, *, files: int, size: int, log: Any) -> dict[str, Any]:
    """The inbound media figures (see the module docstring)."""
    log(f"media: {files} inbound documents of {size // (1024 * 1024)} MB through emulator -> meta -> api")
    (workdir / "media").mkdir(exist_ok=True)
    with scenario_storage(servers) as (database_url, redis_url):
        return asyncio.run(_media(database_url, redis_url, workdir / "media", files, size))


def run_stream(servers: Servers, workdir: Path, *, clients: int, events: int, log: Any) -> dict[str, Any]:
    """The WebSocket fan-out figures (see the module docstring)."""
    log(f"stream: {events} events to {clients} WebSocket clients")
    (workdir / "stream").mkdir(exist_ok=True)
    with scenario_storage(servers) as (database_url, redis_url):
        return asyncio.run(_stream(database_url, redis_url, workdir / "stream", clients, events))
