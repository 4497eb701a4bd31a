"""Sessions on the sandbox network: a socket's hello, pairing by QR or code, resuming, ready.

A new device gets rotating QR codes (or a pairing code) until someone "scans" it through
the admin API; a linked device resumes with its stored credentials; a second connection
for the same device replaces the first (WhatsApp's "conflict"), which the records flag as
an overlap when another client made it. Once ready, the session gets what it missed:
driver faults, unconfirmed acks, inbound messages not yet stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import TypedDict

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.connection import Connection, Pairing
from bisnesgpt.sandbox.wweb.switchboard import NetworkError, Switchboard

log = logging.getLogger(__name__)

PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ23456789"


class Linked(TypedDict):
    """The answer of a scan: which device now belongs to the session."""

    session: str
    deviceId: str
    phone: str
    connectionId: int


@dataclass(eq=False)
class SessionLinker:
    """Binds connections to sessions and links or resumes their devices."""

    board: Switchboard

    async def hello(self, conn: Connection, frame: JsonObject) -> None:
        """The first frame: which session, which client, stored credentials or a wish for a pairing code."""
        if frame.get("type") != "hello":
            raise NetworkError(400, "the first frame must be hello")
        session = str(frame.get("session") or "")
        company, _, index = session.rpartition(":")
        if not company or not index.isdigit():
            raise NetworkError(400, f"hello needs session '<company>:<phone index>', got {session!r}")
        await self.board.wait_unhung(session)  # a hung network does not read
        conn.session = session
        client = frame.get("client")
        conn.client = client if isinstance(client, dict) else {}
        await self._replace(session, conn)
        auth = frame.get("auth")
        if isinstance(auth, dict) and auth.get("deviceId") and auth.get("secret"):
            await self._resume(session, conn, str(auth["deviceId"]), str(auth["secret"]))
            return
        conn.state = "pairing"
        conn.pairing = Pairing()
        pair_phone = frame.get("pairPhone")
        if pair_phone:
            await self.pairing_code(conn, str(pair_phone))
        else:
            self.board.later(self.board.config.qr_delay_ms, self._qr_loop(conn))

    async def _replace(self, session: str, conn: Connection) -> None:
        """``conn`` becomes the session's live connection; one still open is told it was replaced."""
        existing = self.board.live.get(session)
        replacing = existing is not None and existing.open
        # Two clients (processes) driving one device at once is the violation; the same client
        # reconnecting before its old socket was noticed dead is only a stale socket.
        overlapped = replacing and existing is not None and existing.client.get("holder") != conn.client.get("holder")
        self.board.records.bind_connection(conn.id, session, conn.client, overlapped)
        self.board.live[session] = conn
        if existing is not None and replacing:
            if overlapped:
                log.warning("session %s: connection %d (%s) replaces open connection %d (%s)", session, conn.id,
                            conn.client, existing.id, existing.client)
            await existing.kick("disconnect", "replaced: this device connected from another client")

    async def _resume(self, session: str, conn: Connection, device_id: str, secret: str) -> None:
        device = self.board.records.check_device(session, device_id, secret)
        if device is None:
            await conn.kick("logged_out", "device is not linked (logged out from the phone or unknown)")
            return
        conn.state = "authenticated"
        conn.phone, conn.push_name = device["phone"], device["push_name"]
        await conn.push({"type": "authenticated", "phone": device["phone"], "deviceId": device["device_id"]})
        self.board.later(self.board.config.ready_delay_ms, self._ready(conn))

    async def _qr_loop(self, conn: Connection) -> None:
        while conn.open and conn.state == "pairing" and conn.pairing is not None and conn.pairing.code is None:
            ref = secrets.token_urlsafe(18)
            keys = ",".join(base64.b64encode(secrets.token_bytes(n)).decode() for n in (32, 32, 16))
            conn.pairing.qr = f"2@{ref},{keys}"
            conn.pairing.qr_count += 1
            await conn.push({"type": "qr", "code": conn.pairing.qr})
            await asyncio.sleep(self.board.config.qr_rotate_ms / 1000)

    async def pairing_code(self, conn: Connection, phone: str) -> None:
        """A code to enter on ``phone`` instead of the QR (which stops rotating)."""
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
        faults = self.board.faults_for(session)
        if faults.stall_remaining > 0:
            faults.stall_remaining -= 1
            log.info("session %s: stalled after authenticating (sandbox fault)", session)
            return
        conn.state = "ready"
        await conn.push({"type": "ready", "phone": conn.phone, "pushName": conn.push_name})
        for name, params in faults.driver.items():
            await conn.push(p.fault_frame(name, params))
        for message_id, level in self.board.records.unconfirmed_acks(session):
            await conn.push({"type": "ack", "id": message_id, "level": p.ACK_LEVELS[level - 1]})
        for message in self.board.records.pending_inbound(session):
            await self.board.push_inbound(conn, message)
        if faults.flap_remaining > 0:
            self.board.flap(conn, faults)

    async def scan(self, session: str, *, phone: str | None = None, code: str | None = None,
                   push_name: str | None = None) -> Linked:
        """A phone scans the session's QR (or enters its pairing code): the device is linked."""
        conn = self.board.live.get(session)
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
        self.board.records.link_device(session, device_id, secret, digits, name)
        conn.state, conn.phone, conn.push_name = "authenticated", digits, name
        await conn.push({"type": "pair_success", "auth": {"deviceId": device_id, "secret": secret},
                         "phone": digits, "pushName": name})
        self.board.later(self.board.config.auth_delay_ms, self._ready(conn))
        return {"session": session, "deviceId": device_id, "phone": digits, "connectionId": conn.id}
