"""A session's status: the states it passes through, what its metadata says, how a change is recorded.

A status change is one transaction: the ``phone_status`` row and a tenant
``session.status`` event (the outbox tenant webhooks fan out from). It is then announced
on ``bot:event`` (``status_update``, and ``auth_status`` for the pairing states); pub/sub
is best effort, the row is the truth.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal, TypedDict, get_args

import asyncpg
import redis.asyncio as aioredis

from bisnesgpt.coordination.channels import BOT_EVENT, publish
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.messaging.events import SESSION_STATUS, record_tenant_event
from bisnesgpt.phones.store import set_phone_status

SessionStatus = Literal["initializing", "qr", "pairing_code", "authenticated", "ready", "error", "disconnected",
                        "pending"]
SESSION_STATUSES: tuple[SessionStatus, ...] = get_args(SessionStatus)
# The statuses of pairing and being paired: announced as ``auth_status`` too.
AUTH_STATUSES: frozenset[SessionStatus] = frozenset({"qr", "pairing_code", "authenticated", "ready"})
# What the tenant ``session.status`` event carries of the metadata, besides the status.
TENANT_EVENT_KEYS = ("qrCode", "pairingCode", "reason", "retryInMs", "retryAt", "loggedOut")


class StatusMetadata(TypedDict, total=False):
    """What a status says besides its name (members that are None are left out when written)."""

    reason: str
    detail: str
    qrCode: str
    pairingCode: str
    phoneNumber: str
    pushName: str | None
    deviceId: str | None
    stored: bool
    resumed: bool
    attempt: int
    retryInMs: int
    retryAt: str
    loggedOut: bool
    lastDisconnect: str
    breaker: Literal["open"]


async def write_status(conn: asyncpg.Connection, key: SessionKey, status: SessionStatus,
                       metadata: Mapping[str, object], *, phone_number: str | None = None) -> None:
    """``phone_status`` + tenant ``session.status`` event, in the caller's transaction."""
    row = await set_phone_status(conn, key.company_id, key.phone_index, status, metadata=dict(metadata),
                                 phone_number=phone_number, connection_type="wwebjs", process_name="wwebjs")
    data: dict[str, object] = {"status": status, "phone_index": key.phone_index,
                               "phone_number": row.get("phone_number")}
    data.update((name, metadata[name]) for name in TENANT_EVENT_KEYS if name in metadata)
    await record_tenant_event(conn, company_id=key.company_id, phone_index=key.phone_index, type=SESSION_STATUS,
                              data=data)


async def announce_status(redis: aioredis.Redis, key: SessionKey, status: SessionStatus,
                          metadata: Mapping[str, object], *, namespace: str, process_name: str, pid: int,
                          phone_number: str | None) -> None:
    """Publish the change on ``bot:event`` (and, for pairing states or a logout, the auth status)."""
    payload: dict[str, object] = {
        "processName": process_name, "processId": pid, "eventType": "status_update",
        "timestamp": int(time.time() * 1000), "companyId": key.company_id, "phoneIndex": key.phone_index,
        "status": status, "phoneNumber": phone_number, "metadata": dict(metadata),
    }
    await publish(redis, BOT_EVENT, payload, namespace=namespace)
    if status in AUTH_STATUSES or metadata.get("loggedOut"):
        auth_status = "logged_out" if metadata.get("loggedOut") else status
        await publish(redis, BOT_EVENT, {**payload, "eventType": "auth_status", "authStatus": auth_status},
                      namespace=namespace)
