"""Test support for the WhatsApp-Web engine: seed data, spawn the processes, talk to them.

Messages are created the way the API creates them, without an API process:
``messaging.store.insert_outbound`` (status ``queued``, payload per the COMMON payload
contract, ``chat_id`` ``<digits>@c.us``) and ``QueueProducer.add(WWEBJS, id, …)``
(``enqueue_message``), so the engine is tested alone.
"""

from __future__ import annotations

import io
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from bisnesgpt.core.ids import new_message_id
from bisnesgpt.messaging import store
from bisnesgpt.messaging.queues import WWEBJS, QueueProducer
from tests.support.polling import eventually
from tests.support.procs import Proc, clean_env, free_port

ENCRYPTION_KEY = "5a" * 32
ADMIN_KEY = "test-admin-key-for-wwebjs-tests"
T = TypeVar("T")

# Fast timings so lifecycle tests take seconds, not minutes.
FAST_WWEBJS_ENV = {
    "WWEBJS_RECONNECT_BASE_MS": "400",
    "WWEBJS_RECONNECT_MAX_MS": "2000",
    "WWEBJS_STABLE_SECONDS": "30",
    "WWEBJS_BREAKER_DISCONNECTS": "4",
    "WWEBJS_BREAKER_WINDOW_SECONDS": "120",
    "WWEBJS_RECONCILE_INTERVAL_MS": "500",
    "WWEBJS_START_STAGGER_MS": "100",
    "WWEBJS_LEASE_TTL_SECONDS": "6",
    "WWEBJS_NOT_READY_RETRY_MS": "300",
    "WWEBJS_NOT_READY_RETRY_MAX_MS": "1500",
    "WWEBJS_SEND_JITTER_MS": "20",
    "WWEBJS_MAX_MESSAGES_PER_SECOND": "20",
    "WWEBJS_SEND_TIMEOUT_SECONDS": "5",
    "WWEBJS_INIT_TIMEOUT_SECONDS": "20",
    "HEARTBEAT_INTERVAL": "1000",
    # The sandbox serves its sample media on 127.0.0.1.
    "WWEBJS_MEDIA_ALLOW_PRIVATE_URLS": "true",
}


# --- data ----------------------------------------------------------------------------------------


async def seed_phone(database_url: str, company_id: str, phone_index: int = 0, *,
                     connection_type: str = "wwebjs") -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", company_id)
        await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) VALUES ($1, $2, $3)",
                           company_id, phone_index, connection_type)
    finally:
        await conn.close()


async def company_key(database_url: str, company_id: str) -> str:
    from bisnesgpt.tenancy.store import create_api_key

    conn = await asyncpg.connect(database_url)
    try:
        _record, plaintext = await create_api_key(conn, company_id=company_id, name="test")
    finally:
        await conn.close()
    return plaintext


def text_payload(to: str, body: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"body": body, "preview_url": False}}


async def enqueue_message(database_url: str, redis_url: str, company_id: str, phone_index: int,
                          payload: dict[str, Any], *, deadline_at: datetime | None = None) -> str:
    """Store a queued outbound message and add its job, as the send API does."""
    from bisnesgpt.db.pool import _init_connection

    kind = payload["type"]
    to = payload["to"]
    body = payload.get(kind) or {}
    message_id = new_message_id()
    conn = await asyncpg.connect(database_url)
    await _init_connection(conn)
    try:
        async with conn.transaction():
            await store.insert_outbound(conn, store.NewOutboundMessage(
                message_id=message_id, company_id=company_id, phone_index=phone_index, provider="wwebjs",
                connection_type="wwebjs", chat_id=f"{to}@c.us", message_type=kind, payload=payload,
                queue_name=WWEBJS.name, process_name="wwebjs",
                content=body.get("body") if kind == "text" else body.get("caption"),
                media_url=body.get("link") if kind != "text" else None,
                context_message_id=(payload.get("context") or {}).get("message_id"), deadline_at=deadline_at,
            ))
    finally:
        await conn.close()
    producer = QueueProducer(redis_url)
    try:
        await producer.add(WWEBJS, message_id, {"messageId": message_id, "companyId": company_id,
                                                "phoneIndex": phone_index})
    finally:
        await producer.close()
    return message_id


class Db:
    """Short queries against a test database."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch(query, *args)
        finally:
            await conn.close()
        return [_decode(dict(r)) for r in rows]

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def execute(self, query: str, *args: Any) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()

    async def phone_status(self, company_id: str, phone_index: int = 0) -> dict[str, Any] | None:
        return await self.fetchrow("SELECT * FROM phone_status WHERE company_id = $1 AND phone_index = $2",
                                   company_id, phone_index)

    async def wait_status(self, company_id: str, phone_index: int, status: str, *, timeout: float = 30,
                          where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            row = await self.phone_status(company_id, phone_index)
            if row and row["status"] == status and (where is None or where(row)):
                return row
            return None

        return await eventually(check, timeout=timeout, what=f"{company_id}:{phone_index} status {status}")

    async def message(self, message_id: str) -> dict[str, Any] | None:
        return await self.fetchrow("SELECT * FROM messages WHERE message_id = $1", message_id)

    async def wait_message(self, message_id: str, status: str, *, timeout: float = 30) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            row = await self.message(message_id)
            return row if row and row["status"] == status else None

        try:
            return await eventually(check, timeout=timeout, what=f"message {message_id} {status}")
        except AssertionError as exc:
            row = await self.message(message_id)
            now = {k: row[k] for k in ("status", "attempts", "error_code", "error_title")} if row else None
            raise AssertionError(f"{exc}; now {now}, history {await self.history(message_id)}") from None

    async def history(self, message_id: str) -> list[str]:
        """The message's state changes (receipts that did not move it are left out)."""
        rows = await self.fetch("SELECT h.to_status FROM message_status_history h JOIN messages m ON m.id = "
                                "h.message_pk WHERE m.message_id = $1 AND h.applied ORDER BY h.id", message_id)
        return [r["to_status"] for r in rows]

    async def session_events(self, company_id: str) -> list[dict[str, Any]]:
        rows = await self.fetch("SELECT data FROM tenant_events WHERE company_id = $1 AND type = 'session.status' "
                                "ORDER BY created_at, id", company_id)
        return [r["data"] for r in rows]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for name, value in row.items():
        if isinstance(value, str) and name in ("metadata", "payload", "data", "raw", "args", "result"):
            row[name] = json.loads(value)
    return row


# --- processes ------------------------------------------------------------------------------------


@dataclass
class SandboxNetwork:
    """A running ``bisnesgpt sandbox wweb serve`` and its admin API."""

    proc: Proc
    url: str
    data_dir: Path

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.request(method, self.url + path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def session(self, company_id: str, phone_index: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/admin/sessions/{company_id}/{phone_index}")
        return result

    async def scan(self, company_id: str, phone_index: int = 0, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", f"/admin/sessions/{company_id}/{phone_index}/scan",
                                                 json=body)
        return result

    async def inbound(self, company_id: str, phone_index: int = 0, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", f"/admin/sessions/{company_id}/{phone_index}/inbound",
                                                 json=body)
        return result

    async def fault(self, company_id: str, phone_index: int = 0, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", f"/admin/sessions/{company_id}/{phone_index}/faults",
                                                 json=body)
        return result

    async def messages(self, session: str | None = None) -> list[dict[str, Any]]:
        params = {"session": session} if session else {}
        result = await self.call("GET", "/admin/messages", params=params)
        return list(result["messages"])

    async def connections(self, session: str | None = None) -> dict[str, Any]:
        params = {"session": session} if session else {}
        result: dict[str, Any] = await self.call("GET", "/admin/connections", params=params)
        return result


def start_sandbox(workdir: Path, *, name: str = "sandbox", port: int | None = None,
                  extra: list[str] | None = None) -> SandboxNetwork:
    port = port or free_port()
    data_dir = workdir / f"{name}-data"
    args = ["sandbox", "wweb", "serve", "--port", str(port), "--data-dir", str(data_dir),
            "--ack-server-ms", "20", "--ack-device-ms", "100", "--ack-read-ms", "300",
            "--keepalive-interval", "1", "--keepalive-timeout", "4", "--qr-rotate-ms", "60000",
            "--auth-delay-ms", "100", "--ready-delay-ms", "100", *(extra or [])]
    proc = Proc(args, cwd=workdir, env=clean_env(), log_name=name)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/health", proc)
    except BaseException:
        proc.kill_tree()
        raise
    return SandboxNetwork(proc, url, data_dir)


def _wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"process exited early:\n{proc.output()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not answering after {timeout}s:\n{proc.output()[-4000:]}")


@dataclass
class RoleProc:
    proc: Proc
    url: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url + "/health", timeout=5).json()
        return result

    def kill9(self) -> None:
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; if it does not exit, dump every thread's stack (faulthandler) first."""
        self.proc.signal(signal.SIGTERM)
        try:
            return self.proc.popen.wait(timeout)
        except Exception:
            self.proc.signal(signal.SIGABRT)
            self.proc.popen.wait(10)
            raise AssertionError(f"did not stop within {timeout}s:\n{self.proc.output()[-6000:]}") from None


def role_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=database_url, REDIS_URL=redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
                     ADMIN_API_KEY=ADMIN_KEY, HOST="127.0.0.1", LOG_LEVEL="INFO", PYTHONFAULTHANDLER="1", **extra)


def start_wwebjs(workdir: Path, database_url: str, redis_url: str, sandbox_url: str | None, *,
                 name: str = "wwebjs", driver: str = "sandbox", wait: bool = True, **extra: str) -> RoleProc:
    port = free_port()
    env = role_env(database_url, redis_url, WWEBJS_PORT=str(port), WWEBJS_DRIVER=driver,
                   **{**FAST_WWEBJS_ENV, **extra})
    if sandbox_url:
        env["WWEBJS_SANDBOX_URL"] = sandbox_url
    proc = Proc(["run", "wwebjs"], cwd=workdir, env=env, log_name=name)
    role = RoleProc(proc, f"http://127.0.0.1:{port}", port, env)
    if wait:
        try:
            _wait_http(role.url + "/health", proc)
        except BaseException:
            proc.kill_tree()
            raise
    return role


def start_api(workdir: Path, database_url: str, redis_url: str, *, name: str = "api") -> RoleProc:
    port = free_port()
    env = role_env(database_url, redis_url, API_PORT=str(port), HEARTBEAT_INTERVAL="1000")
    proc = Proc(["run", "api"], cwd=workdir, env=env, log_name=name)
    role = RoleProc(proc, f"http://127.0.0.1:{port}", port, env)
    try:
        _wait_http(role.url + "/health", proc)
    except BaseException:
        proc.kill_tree()
        raise
    return role


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def qr_matrix_from_png(data: bytes, *, scale: int = 6, border: int = 4) -> list[list[bool]]:
    """Read the module grid back out of a QR PNG (dark module = True)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L")
        width, _height = grey.size
        modules = width // scale - 2 * border
        return [[grey.getpixel(((border + x) * scale + scale // 2, (border + y) * scale + scale // 2)) < 128
                 for x in range(modules)] for y in range(modules)]


def qr_matrix_of(code: str) -> list[list[bool]]:
    import segno

    qr = segno.make_qr(code, error="l")
    return [[bool(cell) for cell in row] for row in qr.matrix]


@dataclass
class PairedStack:
    """A sandbox network, a wwebjs process and an api process, with company ``acme`` phone 0 paired."""

    sandbox: SandboxNetwork
    db: Db
    api: RoleProc
    procs: list[RoleProc]


@asynccontextmanager
async def paired_stack(tmp: Path, database_url: str, redis_url: str, *, phone: str,
                       **wwebjs_env: str) -> AsyncIterator[PairedStack]:
    """Start the sandbox, wwebjs (``wwebjs_env``) and api; pair ``acme:0`` as ``phone``; kill all on exit.

    Seed the phones (``seed_phone``) before entering: wwebjs starts their sessions at once.
    """
    sandbox = start_sandbox(tmp)
    procs: list[RoleProc] = []
    try:
        procs.append(start_wwebjs(tmp, database_url, redis_url, sandbox.url, **wwebjs_env))
        api = start_api(tmp, database_url, redis_url)
        procs.append(api)
        db = Db(database_url)
        await db.wait_status("acme", 0, "qr", timeout=60)
        await sandbox.scan("acme", 0, phone=phone)
        await db.wait_status("acme", 0, "ready", timeout=60)
        yield PairedStack(sandbox, db, api, procs)
    finally:
        for proc in procs:
            proc.proc.kill_tree()
        sandbox.proc.kill_tree()
