"""The HTTP edge: what every request passes before any route sees it (one ASGI middleware).

- **Proxies.** ``X-Forwarded-For``/``-Proto``/``-Host`` are believed only from the addresses in
  ``FORWARDED_ALLOW_IPS``: from such a proxy the client address and scheme are taken from them;
  from anyone else the headers are removed, so no route can be fooled by them.
- **Hosts.** With ``TRUSTED_HOSTS`` set, a request naming another host is answered 400; no
  redirect is built from the Host header (a trailing slash is dropped in place, not redirected).
- **Sizes.** Each route family has a body limit (sends ``BODY_LIMIT_SENDS``, webhooks
  ``META_WEBHOOK_MAX_BYTES``, media uploads ``MEDIA_MAX_BYTES`` plus multipart framing, the
  rest ``BODY_LIMIT_DEFAULT``): a declared ``Content-Length`` over it is answered 413 at once, a
  streamed body is counted and cut off with 413 as soon as it passes the limit.
- **Hostile JSON.** A JSON body must be UTF-8, nest at most ``JSON_MAX_DEPTH`` levels and use no
  ``NaN``/``Infinity``; outside the provider webhooks (which keep such characters, replaced,
  see ``engines.meta.webhook_processor``) its strings may hold no NUL and no lone surrogate,
  which PostgreSQL cannot store. NUL in a path or query is refused the same way (422). Each refusal
  is a 4xx problem naming what to fix, before the route parses anything.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bisnesgpt.api.problems import problem
from bisnesgpt.config import Settings

Family = Literal["sends", "webhooks", "media", "default"]

# Multipart framing around an upload's bytes (boundaries, part headers) allowed on top of MEDIA_MAX_BYTES.
MULTIPART_ALLOWANCE = 1024 * 1024
_WEBHOOK_PREFIXES = ("/webhook/", "/api/meta/webhook")
_SEND_PREFIXES = ("/api/v1/messages", "/api/v2/messages/", "/api/messages/")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def route_family(method: str, path: str) -> Family:
    """Which body limit a request's path falls under."""
    if path.startswith(_WEBHOOK_PREFIXES):
        return "webhooks"
    if path.startswith(_SEND_PREFIXES):
        return "sends"
    if path == "/api/v1/media" and method == "POST":
        return "media"
    return "default"


@dataclass(frozen=True)
class EdgePolicy:
    """The edge's settings, parsed once."""

    proxies: tuple[Network, ...] | Literal["*"]
    hosts: tuple[str, ...] | Literal["*"]
    limits: dict[Family, int]
    json_max_depth: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgePolicy:
        """The policy of FORWARDED_ALLOW_IPS, TRUSTED_HOSTS, the body limits and JSON_MAX_DEPTH."""
        proxies_setting = [p.strip() for p in settings.forwarded_allow_ips.split(",") if p.strip()]
        proxies: tuple[Network, ...] | Literal["*"] = (
            "*" if "*" in proxies_setting else tuple(ipaddress.ip_network(p, strict=False) for p in proxies_setting))
        hosts_setting = [h.strip().lower() for h in settings.trusted_hosts.split(",") if h.strip()]
        any_host = not hosts_setting or "*" in hosts_setting
        hosts: tuple[str, ...] | Literal["*"] = "*" if any_host else tuple(hosts_setting)
        limits: dict[Family, int] = {"sends": settings.body_limit_sends, "webhooks": settings.meta_webhook_max_bytes,
                                     "media": settings.media_max_bytes + MULTIPART_ALLOWANCE,
                                     "default": settings.body_limit_default}
        return cls(proxies, hosts, limits, settings.json_max_depth)

    def trusts_proxy(self, host: str | None) -> bool:
        """Whether the peer at ``host`` is a configured proxy."""
        if self.proxies == "*":
            return True
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (without port) is one TRUSTED_HOSTS names (``*.example.com``: its subdomains)."""
        if self.hosts == "*":
            return True
        host = host.lower()
        return any(host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
                   for pattern in self.hosts)


def _host_without_port(value: str) -> str:
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _last(values: Iterable[bytes]) -> str | None:
    """The value the nearest proxy added: the rightmost of comma-separated header values."""
    items = [part.strip() for value in values for part in value.decode("latin-1").split(",") if part.strip()]
    return items[-1] if items else None


class JsonRefused(Exception):
    """Why a JSON body is refused (``status``: 400 for undecodable bytes, 422 otherwise)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _no_constant(name: str) -> float:
    raise JsonRefused(422, f"{name} is not a JSON number: send numbers as finite decimals")


# The scope key under which the edge hands the route the JSON document it parsed (absent: not
# JSON, or not inspected), so that a route reading it need not parse the body again.
PARSED_JSON = "bisnesgpt.parsed_json"
NOT_JSON = object()


def inspect_json(body: bytes, *, max_depth: int, storable_strings: bool) -> object:
    """The parsed document (``NOT_JSON`` for invalid JSON, left to the route); ``JsonRefused`` for a body
    the product must not parse further."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(400, f"the body is not UTF-8 (byte {exc.start}): send JSON encoded as UTF-8") from exc
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise JsonRefused(422, f"the JSON nests deeper than {max_depth} levels") from exc
    except ValueError:
        return NOT_JSON  # the route answers that with the position of the mistake
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise JsonRefused(422, f"the JSON nests deeper than {max_depth} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if storable_strings and isinstance(key, str) and _UNSTORABLE.search(key):
                    raise JsonRefused(422, _unstorable(key))
                stack.append((item, depth + 1))
        elif storable_strings and isinstance(value, str) and _UNSTORABLE.search(value):
            raise JsonRefused(422, _unstorable(value))
    return document


def _unstorable(text: str) -> str:
    found = _UNSTORABLE.search(text)
    what = "a NUL character (\\u0000)" if found and found.group() == "\x00" else "a lone UTF-16 surrogate"
    return f"a string of the body contains {what}, which cannot be stored: remove it"


def _is_json(headers: dict[bytes, bytes]) -> bool:
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return not content_type or content_type == b"application/json" or content_type.endswith(b"+json")


class HttpEdge:
    """The ASGI middleware of the edge (see module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.policy = EdgePolicy.from_settings(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check and adjust one connection, then hand it on."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = self._forwarded(scope)
        headers = dict(scope["headers"])
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": refusal[2][:120]})
            else:
                await problem(refusal[0], refusal[1], _TITLES[refusal[0]], refusal[2])(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):  # served in place: a redirect would name the Host
            scope = {**scope, "path": path.rstrip("/") or "/",
                     "raw_path": scope.get("raw_path", path.encode()).rstrip(b"/") or b"/"}
        if scope["type"] == "http":
            await self._http(scope, headers, receive, send)
        else:
            await self.app(scope, receive, send)

    def _forwarded(self, scope: Scope) -> Scope:
        """Believe X-Forwarded-* from a configured proxy (one value each); drop them from anyone else."""
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        if not any(name in _FORWARDED_HEADERS for name, _ in raw):
            return scope
        client = scope.get("client")
        kept = [(n, v) for n, v in raw if n not in _FORWARDED_HEADERS]
        if not self.policy.trusts_proxy(client[0] if client else None):
            return {**scope, "headers": kept}
        new = dict(scope)
        chain = [p.strip() for n, v in raw if n == b"x-forwarded-for" for p in v.decode("latin-1").split(",")]
        address = next((a for a in reversed(chain) if a and not self.policy.trusts_proxy(a)), chain[0] if chain else "")
        if address:
            new["client"] = (address, 0)
        proto = _last(v for n, v in raw if n == b"x-forwarded-proto")
        if proto in ("http", "https", "ws", "wss"):
            secure = proto in ("https", "wss")
            if scope["type"] == "websocket":
                new["scheme"] = "wss" if secure else "ws"
            else:
                new["scheme"] = "https" if secure else "http"
            kept.append((b"x-forwarded-proto", proto.encode()))
        host = _last(v for n, v in raw if n == b"x-forwarded-host")
        if host:
            kept.append((b"x-forwarded-host", host.encode("latin-1")))
        new["headers"] = kept
        return new

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        named = headers.get(b"x-forwarded-host") or headers.get(b"host") or b""
        host = _host_without_port(named.decode("latin-1"))
        if not self.policy.allows_host(host):
            return 400, "host-not-allowed", f"this server does not answer for host {host[:100]!r} (TRUSTED_HOSTS)"
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            return 422, "validation-error", "the path or query contains a NUL character (%00): remove it"
        return None

    async def _http(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send) -> None:
        family = route_family(scope["method"], scope["path"])
        limit = self.policy.limits[family]
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(family, limit)(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and _is_json(headers):
            if family == "media":  # uploads are multipart; JSON there is held in memory, so the default limit
                family, limit = "default", min(limit, self.policy.limits["default"])
            await self._json_request(scope, family, limit, receive, send)
            return
        await self._streamed(scope, family, limit, receive, send)

    async def _json_request(self, scope: Scope, family: Family, limit: int, receive: Receive, send: Send) -> None:
        """Read the (bounded) body, inspect it, then replay it to the route."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(family, limit)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        try:
            document = inspect_json(bytes(body), max_depth=self.policy.json_max_depth,
                                    storable_strings=family != "webhooks")
        except JsonRefused as exc:
            title = "Bad request" if exc.status == 400 else "Request validation failed"
            slug = "bad-request" if exc.status == 400 else "validation-error"
            await problem(exc.status, slug, title, exc.detail,
                          [{"field": "body", "message": exc.detail, "type": "json_refused"}])(scope, receive, send)
            return
        if document is not NOT_JSON:
            scope[PARSED_JSON] = document
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, family: Family, limit: int, receive: Receive, send: Send) -> None:
        """Count the body as the route reads it; past the limit answer 413 and tell the route the client left."""
        received = 0
        started = False
        refused = False

        async def counting() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _too_large(family, limit)(scope, receive, _mark_sent(send))
                    return {"type": "http.disconnect"}
            return message

        sent_by_us = False

        def _mark_sent(inner: Send) -> Send:
            async def wrapped(message: Message) -> None:
                nonlocal sent_by_us, started
                sent_by_us = started = True
                await inner(message)
            return wrapped

        async def guarded(message: Message) -> None:
            nonlocal started
            if sent_by_us:
                return  # the 413 is the answer; whatever the route says after it is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting, guarded)


_TITLES = {400: "Bad request", 413: "Payload too large", 422: "Request validation failed"}


def _too_large(family: Family, limit: int) -> ASGIApp:
    setting = {"sends": "BODY_LIMIT_SENDS", "webhooks": "META_WEBHOOK_MAX_BYTES", "media": "MEDIA_MAX_BYTES",
               "default": "BODY_LIMIT_DEFAULT"}[family]
    return problem(413, "payload-too-large", "Payload too large",
                   f"the body is larger than the {limit} byte limit of these routes ({setting}): send less",
                   limit=limit)
