"""Asking the running processes over HTTP: ``GET /health`` on each role's port."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

import httpx

from bisnesgpt.config import ENGINE_ROLES, Role, Settings
from bisnesgpt.core.jsontypes import JsonObject, JsonValue


class ProbeJson(TypedDict):
    """A probe in ``doctor`` and ``status --json``."""

    role: Role
    url: str
    statusCode: int | None
    error: str | None
    elapsedMs: float | None
    status: JsonValue  # the status the process reported, as it said it


@dataclass(frozen=True)
class ReportedCheck:
    """One check as a running process reported it in its ``/health``: verdict, detail, server."""

    ok: bool
    detail: str
    server: str | None


@dataclass(frozen=True)
class Probe:
    """One ``GET /health``: the status code and body, or why there was none."""

    role: Role
    url: str
    status_code: int | None
    body: JsonObject | None  # another process's /health: read with care
    error: str | None
    elapsed_ms: float | None

    @property
    def ok(self) -> bool:
        """It answered 200."""
        return self.status_code == 200

    @property
    def answered(self) -> bool:
        """It answered at all (any status code) within the timeout."""
        return self.status_code is not None

    def check(self, name: str) -> ReportedCheck | None:
        """The process's own check ``name`` (``redis``, ``database``), if it reported one."""
        checks = (self.body or {}).get("checks")
        found = checks.get(name) if isinstance(checks, dict) else None
        if not isinstance(found, dict):
            return None
        detail, server = found.get("detail"), found.get("server")
        return ReportedCheck(found.get("ok") is True, detail if isinstance(detail, str) else "",
                             server if isinstance(server, str) else None)

    def summary(self) -> str:
        """``200 healthy``, ``503 unhealthy (redis: …)`` or ``unreachable (…)``."""
        if self.status_code is None:
            return f"unreachable ({self.error})"
        checks = (self.body or {}).get("checks")
        failing = {n: c.get("detail") for n, c in (checks.items() if isinstance(checks, dict) else ())
                   if isinstance(c, dict) and not c.get("ok")}
        extra = "; ".join(f"{n}: {d}" for n, d in failing.items())
        status = (self.body or {}).get("status")
        return f"{self.status_code}" + (f" {status}" if status else "") + (f" ({extra})" if extra else "")

    def as_dict(self) -> ProbeJson:
        """The JSON form."""
        return {"role": self.role, "url": self.url, "statusCode": self.status_code, "error": self.error,
                "elapsedMs": self.elapsed_ms, "status": (self.body or {}).get("status")}


def server_address(url: str | None) -> str | None:
    """Which server a URL names, without credentials: ``host:port/database`` (what doctor compares)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    path = parts.path.lstrip("/")
    return f"{parts.hostname or ''}:{port or ''}" + (f"/{path}" if path else "")


def local_host(settings: Settings) -> str:
    """Where to reach this machine's processes: HOST, unless it is a wildcard address."""
    return "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host


def health_urls(settings: Settings, *, host: str | None = None, legacy: bool = False) -> dict[Role, str]:
    """``/health`` URL per enabled role (``legacy``: the all-in-one process on PORT)."""
    where = host or local_host(settings)
    if ":" in where and not where.startswith("["):
        where = f"[{where}]"
    if legacy:
        return {"legacy": f"http://{where}:{settings.port}/health"}
    return {role: f"http://{where}:{settings.http_port_for(role)}/health"
            for role in ENGINE_ROLES if settings.role_enabled(role)}


async def probe(client: httpx.AsyncClient, role: Role, url: str) -> Probe:
    """GET ``url``; a connection failure is a probe without a status code."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return Probe(role, url, None, None, str(exc) or type(exc).__name__, None)
    try:
        body = response.json()
    except ValueError:
        body = None
    return Probe(role, url, response.status_code, body if isinstance(body, dict) else None, None,
                 round(response.elapsed.total_seconds() * 1000, 1))


async def probe_all(urls: dict[Role, str], *, timeout: float = 3.0) -> dict[Role, Probe]:
    """Probe every URL at once."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        results = await asyncio.gather(*(probe(client, role, url) for role, url in urls.items()))
    return {result.role: result for result in results}
