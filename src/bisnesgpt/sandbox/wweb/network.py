"""The sandbox WhatsApp-Web network: pairing, delivery, receipts and faults (no HTTP here).

One ``Network`` per sandbox server process. It behaves like WhatsApp's servers do towards
a linked device: a new device gets rotating QR codes (or a pairing code) until someone
"scans" it through the admin API; a linked device resumes with its stored credentials; a
second connection for the same device replaces the first (WhatsApp's "conflict"), which the
records flag as an overlap; sent messages get server/device/read receipts after configurable
delays, replayed after a reconnect until the client confirms them; inbound messages are
queued while the device is offline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.records import Records

log = logging.getLogger(__name__)

PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ23456789"
DRIVER_FAULTS = ("slow_sends", "memory_growth", "freeze")
FAULT_TYPES = ("disconnect", "logout", "hang", "flap", "stall", *DRIVER_FAULTS, "clear")


@dataclass
class NetworkConfig:
    qr_delay_ms: int = 100
    qr_rotate_ms: int = 20_000
    auth_delay_ms: int = 200
    ready_delay_ms: int = 200
    ack_server_ms: int = 50
    ack_device_ms: int = 300
    ack_read_ms: int = 1_000
    auto_read: bool = True
    # Recorded at once, answered this much later (a slow network: a client killed in between
    # resends, and the record shows the duplicate).
    result_delay_ms: int = 0
    keepalive_interval: float = 5.0
    keepalive_timeout: float = 15.0
    hello_timeout: float = 10.0
    not_on_whatsapp: list[str] = field(default_factory=list)

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if not hasattr(self, name):
                raise KeyError(name)
            current = getattr(self, name)
            if isinstance(current, bool):
                setattr(self, name, bool(value))
            elif isinstance(current, int):
                setattr(self, name, int(value))
            elif isinstance(current, float):
                setattr(self, name, float(value))
            else:
                setattr(self, name, [str(v) for v in value])


class Socket(Protocol):
    """The part of a WebSocket the network uses (Starlette's in the server)."""

    async def send_json(self, data: Any) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class NetworkError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Pairing:
    qr: str | None = None
    qr_count: int = 0
    code: str | None = None
    phone: str | None = None


@dataclass
class Faults:
    hang_until: float = 0.0
    flap_remaining: int = 0
    flap_after_ms: int = 500
    # Connections that get stuck after authenticating: the network never says "ready".
    stall_remaining: int = 0
    driver: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hung(self) -> bool:
        return self.hang_until > time.monotonic()

    def describe(self) -> dict[str, Any]:
        hang = None
        if self.hung():
            hang = "until cleared" if math.isinf(self.hang_until) else round(self.hang_until - time.monotonic(), 2)
        return {"hang": hang, "flapRemaining": self.flap_remaining, "stallRemaining": self.stall_remaining,
                "driver": self.driver}


class Connection:
    def __init__(self, network: Network, socket: Socket, connection_id: int) -> None:
        self.network = network
        self.socket = socket
        self.id = connection_id
        self.session: str | None = None
        self.client: dict[str, Any] = {}
        self.state = "new"  # new | pairing | authenticated | ready | closed
        self.pairing: Pairing | None = None
        self.phone: str | None = None
        self.push_name: str | None = None
        self.close_reason: str | None = None
        self.backlog: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        return self.state != "closed"

    async def push(self, frame: dict[str, Any], *, force: bool = False) -> bool:
        """Send a frame; while the session's network hangs, hold it until the hang ends."""
        if not self.open:
            return False
        if not force and self.session and self.network.faults_for(self.session).hung():
            self.backlog.append(frame)
            return True
        async with self._lock:
            try:
                await self.socket.send_json(frame)
                return True
            except Exception as exc:  # the peer went away mid-send
                log.debug("connection %d: send failed: %r", self.id, exc)
                return False

    async def flush(self) -> None:
        backlog, self.backlog = self.backlog, []
        for frame in backlog:
            await self.push(frame)

    async def kick(self, frame_type: str, reason: str) -> None:
        """Tell the client why, then close (disconnect / logged_out / replaced)."""
        if not self.open:
            return
        await self.push({"type": frame_type, "reason": reason}, force=True)
        self.close_reason = reason
        self.state = "closed"
        with contextlib.suppress(Exception):
            await self.socket.close(code=1000)


class Network:
    def __init__(self, records: Records, config: NetworkConfig, media_dir: Path) -> None:
        self.records = records
        self.config = config
        self.media_dir = media_dir
        media_dir.mkdir(parents=True, exist_ok=True)
        self.live: dict[str, Connection] = {}
        self.faults: dict[str, Faults] = {}
        self._timers: set[asyncio.Task[None]] = set()
        records.close_dangling()

    def faults_for(self, session: str) -> Faults:
        return self.faults.setdefault(session, Faults())

    def _later(self, delay_ms: float, coro: Any) -> None:
        async def _run() -> None:
            try:
                await asyncio.sleep(delay_ms / 1000)
            except asyncio.CancelledError:
                coro.close()
                raise
            await coro

        task = asyncio.create_task(_run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def shutdown(self) -> None:
        for task in list(self._timers):
            task.cancel()
        for conn in list(self.live.values()):
            await conn.kick("disconnect", "sandbox shutting down")

    # --- connection lifecycle ------------------------------------------------------------------

    def connect(self, socket: Socket, remote: str | None) -> Connection:
        return Connection(self, socket, self.records.open_connection({}, remote))

    def closed(self, conn: Connection, reason: str) -> None:
        if conn.state != "closed":
            conn.state = "closed"
            conn.close_reason = reason
        self.records.close_connection(conn.id, conn.close_reason or reason)
        if conn.session is not None and self.live.get(conn.session) is conn:
            del self.live[conn.session]

    def welcome(self) -> dict[str, Any]:
        return {"type": "welcome", "keepalive": {"interval": self.config.keepalive_interval,
                                                 "timeout": self.config.keepalive_timeout}}

    async def hello(self, conn: Connection, frame: dict[str, Any]) -> None:
        if frame.get("type") != "hello":
            raise NetworkError(400, "the first frame must be hello")
        session = str(frame.get("session") or "")
        company, _, index = session.rpartition(":")
        if not company or not index.isdigit():
            raise NetworkError(400, f"hello needs session '<company>:<phone index>', got {session!r}")
        await self.wait_unhung(session)  # a hung network does not read
        conn.session = session
        client = frame.get("client")
        conn.client = client if isinstance(client, dict) else {}
        existing = self.live.get(session)
        replacing = existing is not None and existing.open
        # Two clients (processes) driving one device at once is the violation; the same client
        # reconnecting before its old socket was noticed dead is only a stale socket.
        overlapped = replacing and existing is not None and existing.client.get("holder") != conn.client.get("holder")
        self.records.bind_connection(conn.id, session, conn.client, overlapped)
        self.live[session] = conn
        if existing is not None and replacing:
            if overlapped:
                log.warning("session %s: connection %d (%s) replaces open connection %d (%s)", session, conn.id,
                            conn.client, existing.id, existing.client)
            await existing.kick("disconnect", "replaced: this device connected from another client")
        auth = frame.get("auth")
        if isinstance(auth, dict) and auth.get("deviceId") and auth.get("secret"):
            device = self.records.check_device(session, str(auth["deviceId"]), str(auth["secret"]))
            if device is None:
                await conn.kick("logged_out", "device is not linked (logged out from the phone or unknown)")
                return
            conn.state = "authenticated"
            conn.phone, conn.push_name = device["phone"], device["push_name"]
            await conn.push({"type": "authenticated", "phone": device["phone"], "deviceId": device["device_id"]})
            self._later(self.config.ready_delay_ms, self._ready(conn))
            return
        conn.state = "pairing"
        conn.pairing = Pairing()
        pair_phone = frame.get("pairPhone")
        if pair_phone:
            await self.pairing_code(conn, str(pair_phone))
        else:
            self._later(self.config.qr_delay_ms, self._qr_loop(conn))

    async def _qr_loop(self, conn: Connection) -> None:
        while conn.open and conn.state == "pairing" and conn.pairing is not None and conn.pairing.code is None:
            ref = secrets.token_urlsafe(18)
            keys = ",".join(base64.b64encode(secrets.token_bytes(n)).decode() for n in (32, 32, 16))
            conn.pairing.qr = f"2@{ref},{keys}"
            conn.pairing.qr_count += 1
            await conn.push({"type": "qr", "code": conn.pairing.qr})
            await asyncio.sleep(self.config.qr_rotate_ms / 1000)

    async def pairing_code(self, conn: Connection, phone: str) -> None:
        digits = "".join(ch for ch in phone if ch.isdigit())
        if conn.state != "pairing" or conn.pairing is None:
            await conn.push({"type": "error", "message": "pairing code only while waiting to be paired"})
            return
        if not 7 <= len(digits) <= 15:
            await conn.push({"type": "error", "message": f"not a phone number: {phone!r}"})
            return
        code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
        conn.pairing.code, conn.pairing.phone, conn.pairing.qr = f"{code[:4]}-{code[4:]}", digits, None
        await conn.push({"type": "pairing_code", "code": conn.pairing.code, "phone": digits})

    async def _ready(self, conn: Connection) -> None:
        if not conn.open or conn.state != "authenticated" or conn.session is None:
            return
        session = conn.session
        faults = self.faults_for(session)
        if faults.stall_remaining > 0:
            faults.stall_remaining -= 1
            log.info("session %s: stalled after authenticating (sandbox fault)", session)
            return
        conn.state = "ready"
        await conn.push({"type": "ready", "phone": conn.phone, "pushName": conn.push_name})
        for name, params in faults.driver.items():
            await conn.push({"type": "fault", "fault": name, **params})
        for message_id, level in self.records.unconfirmed_acks(session):
            await conn.push({"type": "ack", "id": message_id, "level": p.ACK_LEVELS[level - 1]})
        for message in self.records.pending_inbound(session):
            await self._push_inbound(conn, message)
        if faults.flap_remaining > 0:
            faults.flap_remaining -= 1
            self._later(faults.flap_after_ms, conn.kick("disconnect", "sandbox fault: flapping connection"))

    # --- frames from a client ------------------------------------------------------------------

    async def wait_unhung(self, session: str) -> None:
        """A hung network reads nothing: frames wait (like bytes in a socket buffer) until it recovers."""
        while self.faults_for(session).hung():  # noqa: ASYNC110 - hangs end by time or by a clear
            await asyncio.sleep(0.05)

    async def frame(self, conn: Connection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if conn.session is not None:
            await self.wait_unhung(conn.session)
        if not conn.open:
            return
        if kind == "ping":
            await conn.push({"type": "pong", "n": frame.get("n")})
        elif kind == "pair_phone":
            await self.pairing_code(conn, str(frame.get("phone") or ""))
        elif kind == "send":
            await self._send(conn, frame)
        elif kind == "receipt" and conn.session:
            for message_id in frame.get("ids") or []:
                self.records.confirm_inbound(conn.session, str(message_id))
        elif kind == "ack_received" and conn.session:
            for ack in frame.get("acks") or []:
                level = p.ACK_RANK.get(str(ack.get("level")), 0)
                self.records.confirm_ack(conn.session, str(ack.get("id")), level)
        elif kind == "logout" and conn.session:
            self.records.log_out_device(conn.session, "logged out by the client")
            await conn.kick("logged_out", "logged out by the client")
        else:
            await conn.push({"type": "error", "message": f"unexpected frame {kind!r}"})

    async def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        raw = frame.get("message")
        message: dict[str, Any] = raw if isinstance(raw, dict) else {}

        async def fail(code: str, text: str) -> None:
            await conn.push({"type": "send_result", "ref": ref, "error": {"code": code, "message": text}})

        if conn.state != "ready" or conn.session is None:
            await fail(p.NOT_READY, f"connection is {conn.state}")
            return
        kind, to = str(message.get("kind") or ""), str(message.get("to") or "")
        match = p.CHAT_ID.match(to)
        if kind not in p.SEND_KINDS or match is None:
            await fail(p.BAD_REQUEST, f"bad kind {kind!r} or recipient {to!r}")
            return
        digits = match.group(1)
        if digits is not None and (digits.startswith("0") or digits in self.config.not_on_whatsapp):
            await fail(p.NOT_ON_WHATSAPP, f"{digits} is not on WhatsApp")
            return
        media = message.get("media")
        if kind in p.MEDIA_KINDS:
            stored = self.records.media(str((media or {}).get("handle") or ""))
            if stored is None:
                await fail(p.MEDIA_MISSING, "media handle unknown (upload it first)")
                return
            if stored["size"] > p.MEDIA_LIMITS[kind]:
                await fail(p.MEDIA_TOO_LARGE, f"{kind} of {stored['size']} bytes exceeds {p.MEDIA_LIMITS[kind]}")
                return
        if kind in ("reaction", "edit", "delete") and not message.get("targetId"):
            await fail(p.BAD_REQUEST, f"{kind} needs targetId")
            return
        message_id = str(message.get("id") or ("3EB0" + secrets.token_hex(9).upper()))
        body = {k: message.get(k) for k in ("text", "media", "targetId", "replyTo", "location", "previewUrl")
                if message.get(k) is not None}
        new = self.records.record_outbound(conn.session, message_id, to, kind, body, conn.id)
        if new and kind in ("reaction", "edit", "delete"):
            self.records.annotate(conn.session, str(message["targetId"]),
                                  {"kind": kind, "id": message_id, "text": message.get("text"), "at": time.time()})
        result = {"type": "send_result", "ref": ref, "id": message_id, "timestamp": time.time(), "duplicate": not new}
        if self.config.result_delay_ms > 0:
            self._later(self.config.result_delay_ms, conn.push(result))
        else:
            await conn.push(result)
        if new:
            self._schedule_acks(conn.session, message_id)

    def _schedule_acks(self, session: str, message_id: str) -> None:
        steps = [(1, self.config.ack_server_ms), (2, self.config.ack_device_ms)]
        if self.config.auto_read:
            steps.append((3, self.config.ack_read_ms))
        for level, delay in steps:
            self._later(delay, self._ack(session, message_id, level))

    async def _ack(self, session: str, message_id: str, level: int) -> None:
        if not self.records.set_ack(session, message_id, level):
            return
        conn = self.live.get(session)
        if conn is not None and conn.state == "ready":
            await conn.push({"type": "ack", "id": message_id, "level": p.ACK_LEVELS[level - 1]})

    async def _push_inbound(self, conn: Connection, message: dict[str, Any]) -> None:
        body = message["body"]
        if await conn.push({"type": "message", "message": {"id": message["id"], "chat": message["chat"],
                                                            "timestamp": message["first_at"], "type": message["kind"],
                                                            **body}}):
            self.records.count_push(message["session"], message["id"])

    # --- admin actions ----------------------------------------------------------------------------

    async def scan(self, session: str, *, phone: str | None = None, code: str | None = None,
                   push_name: str | None = None) -> dict[str, Any]:
        """A phone scans the session's QR (or enters its pairing code): the device is linked."""
        conn = self.live.get(session)
        if conn is None or conn.state != "pairing" or conn.pairing is None:
            state = conn.state if conn is not None else "not connected"
            raise NetworkError(409, f"session {session} is not waiting to be paired ({state})")
        if code is not None:
            if conn.pairing.code is None or code.replace("-", "").upper() != conn.pairing.code.replace("-", ""):
                raise NetworkError(400, "wrong pairing code")
        elif conn.pairing.qr is None and conn.pairing.code is None:
            raise NetworkError(409, f"session {session} has no QR code yet")
        digits = "".join(ch for ch in (phone or conn.pairing.phone or "") if ch.isdigit())
        if not digits:
            digits = "60" + str(int(hashlib.sha256(session.encode()).hexdigest(), 16))[:9]
        device_id = f"{digits}:{secrets.randbelow(90) + 10}@s.whatsapp.net"
        secret = secrets.token_urlsafe(32)
        name = push_name or f"Sandbox {session}"
        self.records.link_device(session, device_id, secret, digits, name)
        conn.state, conn.phone, conn.push_name = "authenticated", digits, name
        await conn.push({"type": "pair_success", "auth": {"deviceId": device_id, "secret": secret},
                         "phone": digits, "pushName": name})
        self._later(self.config.auth_delay_ms, self._ready(conn))
        return {"session": session, "deviceId": device_id, "phone": digits, "connectionId": conn.id}

    async def inject(self, session: str, body: dict[str, Any]) -> dict[str, Any]:
        sender = "".join(ch for ch in str(body.get("from") or "") if ch.isdigit())
        if not sender:
            raise NetworkError(400, "inbound message needs 'from' (the sender's phone number)")
        kind = str(body.get("type") or "text")
        if kind not in ("text", *p.MEDIA_KINDS, "location"):
            raise NetworkError(400, f"unsupported inbound type {kind!r}")
        message_id = str(body.get("id") or ("3A" + secrets.token_hex(10).upper()))
        chat = str(body.get("chat") or f"{sender}@c.us")
        content = {"from": sender, "text": body.get("text"), "media": body.get("media"),
                   "quotedId": body.get("quotedId"), "pushName": body.get("pushName") or f"Contact {sender}",
                   "location": body.get("location")}
        content = {k: v for k, v in content.items() if v is not None}
        if self.records.message(session, message_id) is not None:
            raise NetworkError(409, f"message {message_id} already exists")
        self.records.record_inbound(session, message_id, chat, kind, content)
        conn = self.live.get(session)
        pushed = False
        if conn is not None and conn.state == "ready":
            stored = self.records.message(session, message_id)
            if stored is not None:
                await self._push_inbound(conn, stored)
                pushed = True
        return {"id": message_id, "session": session, "pushed": pushed}

    async def fault(self, session: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = str(body.get("type") or "")
        if kind not in FAULT_TYPES:
            raise NetworkError(400, f"unknown fault {kind!r}; one of {', '.join(FAULT_TYPES)}")
        conn = self.live.get(session)
        if kind in DRIVER_FAULTS:
            await self._driver_fault(session, conn, kind, {k: v for k, v in body.items() if k != "type"})
        else:
            await getattr(self, f"_fault_{kind}")(session, conn, body)
        return {"session": session, "fault": kind, "connected": conn is not None and conn.open,
                "faults": self.faults_for(session).describe()}

    async def _fault_disconnect(self, _session: str, conn: Connection | None, body: dict[str, Any]) -> None:
        if conn is not None:
            await conn.kick("disconnect", str(body.get("reason") or "sandbox fault: disconnect"))

    async def _fault_logout(self, session: str, conn: Connection | None, body: dict[str, Any]) -> None:
        reason = str(body.get("reason") or "logged out from the phone (sandbox fault)")
        self.records.log_out_device(session, reason)
        if conn is not None:
            await conn.kick("logged_out", reason)

    async def _fault_hang(self, session: str, _conn: Connection | None, body: dict[str, Any]) -> None:
        seconds = float(body.get("seconds") or 0)
        self.faults_for(session).hang_until = time.monotonic() + seconds if seconds > 0 else math.inf
        if seconds > 0:
            self._later(seconds * 1000 + 10, self._recover(session))

    async def _recover(self, session: str) -> None:
        conn = self.live.get(session)
        if conn is not None and not self.faults_for(session).hung():
            await conn.flush()

    async def _fault_flap(self, session: str, conn: Connection | None, body: dict[str, Any]) -> None:
        faults = self.faults_for(session)
        faults.flap_remaining = int(body.get("count") or 10)
        faults.flap_after_ms = int(body.get("afterMs") or 300)
        if conn is not None and conn.state == "ready" and faults.flap_remaining > 0:
            faults.flap_remaining -= 1
            self._later(faults.flap_after_ms, conn.kick("disconnect", "sandbox fault: flapping connection"))

    async def _fault_stall(self, session: str, _conn: Connection | None, body: dict[str, Any]) -> None:
        self.faults_for(session).stall_remaining = int(body.get("count") or 1)

    async def _fault_clear(self, session: str, conn: Connection | None, _body: dict[str, Any]) -> None:
        self.faults[session] = Faults()
        if conn is not None:
            await conn.flush()
            await conn.push({"type": "fault", "fault": "clear"})

    async def _driver_fault(self, session: str, conn: Connection | None, kind: str, params: dict[str, Any]) -> None:
        """Acted out inside the client: remembered (except freeze) and pushed on every ready."""
        if kind != "freeze":
            self.faults_for(session).driver[kind] = params
        if conn is not None and conn.state == "ready":
            await conn.push({"type": "fault", "fault": kind, **params})

    # --- views ------------------------------------------------------------------------------------

    def session_view(self, session: str) -> dict[str, Any]:
        conn = self.live.get(session)
        device = self.records.device(session)
        connections = self.records.connections(session)
        messages = self.records.messages(session=session)
        view: dict[str, Any] = {
            "session": session,
            "connected": conn is not None and conn.open,
            "state": conn.state if conn is not None else "offline",
            "connectionId": conn.id if conn is not None else None,
            "client": conn.client if conn is not None else None,
            "qr": conn.pairing.qr if conn is not None and conn.pairing is not None else None,
            "pairingCode": conn.pairing.code if conn is not None and conn.pairing is not None else None,
            "device": None,
            "faults": self.faults_for(session).describe(),
            "connections": len(connections),
            "overlaps": sum(c["overlapped"] for c in connections),
            "sent": sum(1 for m in messages if m["direction"] == "out"),
            "received": sum(1 for m in messages if m["direction"] == "in"),
        }
        if device is not None:
            view["device"] = {"deviceId": device["device_id"], "phone": device["phone"],
                              "pushName": device["push_name"], "pairedAt": device["paired_at"],
                              "loggedOut": device["logged_out_at"] is not None,
                              "logoutReason": device["logout_reason"]}
        return view

    def sessions(self) -> list[str]:
        names = set(self.live)
        names.update(r["session"] for r in self.records.conn.execute("SELECT DISTINCT session FROM devices"))
        names.update(r["session"] for r in self.records.conn.execute("SELECT DISTINCT session FROM messages"))
        names.update(r["session"] for r in self.records.conn.execute(
            "SELECT DISTINCT session FROM connections WHERE session IS NOT NULL"))
        return sorted(names)

    def config_view(self) -> dict[str, Any]:
        return asdict(self.config)
