"""One delivery attempt over HTTP: check the destination, POST, read a capped response.

Rules: the whole attempt (DNS, connect, TLS, send, response headers, capped body) has one
deadline (``WEBHOOK_TIMEOUT_SECONDS``, 10 s); redirects are not followed (a 3xx is a
failure); the connection goes to exactly the address that passed the destination check
(Host header and TLS SNI keep the name, so virtual hosts and certificates still work); at
most ``WEBHOOK_RESPONSE_MAX_BYTES`` of the response body are read; environment proxies
are ignored (they would bypass the destination check).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from dataclasses import dataclass, field

import httpx

from bisnesgpt import __version__
from bisnesgpt.webhooks.urls import (
    DestinationRefused,
    DestinationUnresolvable,
    Resolver,
    is_public,
    parse_endpoint_url,
    resolve_destination,
)

log = logging.getLogger(__name__)

USER_AGENT = f"bisnesgpt-webhooks/{__version__}"
CLIENT_IDLE_SECONDS = 300.0


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt went: what the receiver answered, or why there was no usable answer."""

    ok: bool
    status_code: int | None
    error: str | None  # why it failed (None when ok)
    excerpt: str | None  # the start of the response body
    retry_after: float | None  # seconds the receiver asked us to wait (429/503)
    duration: float
    refused: bool = False  # the destination check refused the address


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


@dataclass(eq=False, kw_only=True)
class Deliverer:
    """Posts signed bodies; one small connection pool per endpoint (bounded like its concurrency)."""

    resolver: Resolver
    allow_private: bool
    timeout: float
    response_max_bytes: int
    endpoint_concurrency: int
    private_excerpts: bool = False
    _clients: dict[str, tuple[httpx.AsyncClient, float]] = field(default_factory=dict, init=False, repr=False)

    def _client(self, endpoint_id: str) -> httpx.AsyncClient:
        entry = self._clients.get(endpoint_id)
        if entry is None:
            client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=self.endpoint_concurrency,
                                    max_keepalive_connections=self.endpoint_concurrency, keepalive_expiry=30.0),
            )
        else:
            client = entry[0]
        self._clients[endpoint_id] = (client, time.monotonic())
        return client

    async def close_idle(self, idle_seconds: float = CLIENT_IDLE_SECONDS) -> None:
        """Close the pools of endpoints not posted to for ``idle_seconds`` (they reopen on demand)."""
        cutoff = time.monotonic() - idle_seconds
        for endpoint_id, (client, last_used) in list(self._clients.items()):
            if last_used < cutoff:
                del self._clients[endpoint_id]
                await client.aclose()

    async def close(self) -> None:
        """Close every endpoint's pool (at shutdown)."""
        clients, self._clients = self._clients, {}
        for client, _ in clients.values():
            await client.aclose()

    async def post(self, endpoint_id: str, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        """POST ``body`` to the checked address of ``url`` within one deadline; never raises for the network."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(endpoint_id, url, body, headers, started)
        except DestinationRefused as exc:
            return AttemptResult(False, None, f"destination refused: {exc.detail}", None, None,
                                 time.monotonic() - started, refused=True)
        except DestinationUnresolvable as exc:
            return AttemptResult(False, None, exc.detail, None, None, time.monotonic() - started)
        except TimeoutError:
            return AttemptResult(False, None, f"timed out after {self.timeout:g}s", None, None,
                                 time.monotonic() - started)
        except httpx.HTTPError as exc:
            detail = str(exc) or type(exc).__name__
            return AttemptResult(False, None, f"{type(exc).__name__}: {detail}", None, None,
                                 time.monotonic() - started)

    async def _post(self, endpoint_id: str, url: str, body: bytes, headers: dict[str, str],
                    started: float) -> AttemptResult:
        target = parse_endpoint_url(url)
        addresses = await resolve_destination(target, self.resolver, allow_private=self.allow_private)
        address = addresses[0]
        request_headers = {
            **headers,
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" and target.ip_literal is None else {}
        client = self._client(endpoint_id)
        request = client.build_request("POST", target.url_for_address(address), content=body,
                                       headers=request_headers, extensions=extensions)
        response = await client.send(request, stream=True)
        # The delivery log shows tenants what answered: only a public destination's words
        # (with private destinations allowed, an internal service's answer must not leak).
        readable = is_public(address) or self.private_excerpts
        try:
            excerpt = await self._read_capped(response) if readable else None
        finally:
            await response.aclose()
        duration = time.monotonic() - started
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(True, code, None, excerpt, None, duration)
        if 300 <= code < 400:
            location = response.headers.get("location", "")[:200] if readable else "(not shown: private destination)"
            error = f"HTTP {code}: redirects are not followed (Location: {location})"
        else:
            error = f"HTTP {code}"
        retry_after = _retry_after(response.headers.get("retry-after")) if code in (429, 503) else None
        return AttemptResult(False, code, error, excerpt, retry_after, duration)

    async def _read_capped(self, response: httpx.Response) -> str | None:
        if self.response_max_bytes <= 0:
            return None
        buffer = bytearray()
        async for chunk in response.aiter_raw():
            buffer.extend(chunk)
            if len(buffer) >= self.response_max_bytes:
                break
        return bytes(buffer[: self.response_max_bytes]).decode("utf-8", errors="replace") if buffer else ""
