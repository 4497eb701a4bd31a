"""Where a webhook may go: http(s) URLs to public addresses (unless the operator allows private).

The same rules guard the media URLs the wwebjs engine downloads (``engines/wwebjs/media.py``):
our server fetching a tenant-given URL must not reach internal services either.

Checked twice: when an endpoint is saved (the URL text, and the addresses its host resolves
to now) and before every delivery attempt (the addresses it resolves to then). The attempt
then connects to exactly the address that was checked, so a DNS answer that changes between
check and connect (rebinding) cannot redirect it to an internal service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from bisnesgpt.core.errors import BisnesgptError, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048


class DestinationRefused(ValidationFailed):
    """The URL is not an allowed webhook destination (scheme, credentials, private address)."""


class DestinationUnresolvable(BisnesgptError):
    """The host name did not resolve (a delivery failure to retry, not a refusal)."""


@dataclass(frozen=True)
class EndpointUrl:
    """A parsed destination URL: what to connect to, and what to say in Host and TLS SNI."""

    url: str
    scheme: str  # http | https
    host: str  # lower-case host name or IP literal, without brackets
    port: int
    path_and_query: str

    @property
    def host_header(self) -> str:
        """The Host header: the name (IPv6 in brackets), with the port only when it is not the default."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url_for_address(self, address: IPAddress) -> str:
        """The same URL with the host replaced by one checked address (connect to exactly it)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path_and_query}"

    @property
    def ip_literal(self) -> IPAddress | None:
        """The address when the URL's host is an IP literal (None for a name to resolve)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _refuse(detail: str) -> DestinationRefused:
    return DestinationRefused(detail, errors=[{"field": "url", "message": detail, "type": "destination_refused"}])


def parse_endpoint_url(url: str) -> EndpointUrl:
    """Syntax rules: absolute http(s) URL with a host, no credentials, no fragment."""
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise _refuse("url must not contain whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _refuse("url must start with http:// or https://")
    if not parts.hostname:
        raise _refuse("url has no host")
    if parts.username is not None or parts.password is not None:
        raise _refuse("url must not contain credentials; send them as a custom header instead")
    if parts.fragment:
        raise _refuse("url must not contain a #fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise _refuse("url has an invalid port") from exc
    if port == 0:
        raise _refuse("url has an invalid port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return EndpointUrl(url, parts.scheme, parts.hostname.lower().rstrip("."), port, path)


# IANA special-purpose address registries (IPv4 and IPv6), every entry: none of them is a
# place a tenant's webhook or media URL may lead, whatever its "globally reachable" column
# says (anycast infrastructure, documentation, benchmarking, translation prefixes).
SPECIAL_PURPOSE_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32"))
SPECIAL_PURPOSE_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/128", "::1/128", "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48",
    "100::/64", "100:0:0:1::/64", "2001::/23", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20",
    "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))
# Prefixes whose addresses carry an IPv4 address a host may actually reach through them
# (NAT64 gateways, 6to4 relays, Teredo): judged by the IPv4 address they embed.
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address ``address`` carries: mapped, translated, compatible, 6to4, NAT64, Teredo."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in ipaddress.IPv6Network("::ffff:0:0:0/96") or any(address in net for net in NAT64):
        found.append(low32)
    if address in ipaddress.IPv6Network("::/96") and int(address) > 1:  # IPv4-compatible (not :: or ::1)
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client)
    return found


def _own_reason(address: IPAddress) -> str | None:
    """Why ``address`` itself (not an IPv4 address it embeds) is not public."""
    checks = (("loopback", address.is_loopback), ("link-local", address.is_link_local),
              ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
              ("private", address.is_private))
    found = next((reason for reason, refused in checks if refused), None)
    special = SPECIAL_PURPOSE_V4 if isinstance(address, ipaddress.IPv4Address) else SPECIAL_PURPOSE_V6
    if found is None and (not address.is_global or any(address in net for net in special)):
        found = "not globally routable"
    return found


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination (None: it is).

    IPv4: private, loopback, link-local, multicast or any IANA special-purpose range.
    IPv6: the same, and an address that embeds an IPv4 address (mapped, translated,
    compatible, 6to4, NAT64, Teredo) is refused when that IPv4 address is; otherwise it is
    judged as that IPv4 address (on an IPv6-only host NAT64 is how the public Internet is
    reached), except Teredo, refused with the rest of the special-purpose ranges.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return _own_reason(address)
    for inner in embedded_ipv4(address):
        reason = _own_reason(inner)
        if reason is not None:
            return reason
    if address.teredo is None and embedded_ipv4(address):
        return None  # reached through its (public) IPv4 address; Teredo is refused below
    return _own_reason(address)


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public destination (``refusal_reason`` finds nothing)."""
    return refusal_reason(address) is None


class Resolver(Protocol):
    """Host name -> addresses (a narrow interface so tests can stand in a DNS answer)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to; DestinationUnresolvable when there is none."""
        ...


class SystemResolver:
    """The operating system's resolver, without blocking the event loop."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """``getaddrinfo`` in the loop's executor, de-duplicated, zone ids dropped."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise DestinationUnresolvable(f"cannot resolve {host}: {exc}") from exc
        found: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            raise DestinationUnresolvable(f"{host} has no addresses")
        return found


async def resolve_destination(target: EndpointUrl, resolver: Resolver, *, allow_private: bool,
                              what: str = "webhooks",
                              setting: str = "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS") -> list[IPAddress]:
    """The addresses to connect to, every one of them allowed; DestinationRefused otherwise.

    One refused address refuses the whole answer: a name that resolves to both a public and
    an internal address is not a safe destination.
    """
    literal = target.ip_literal
    addresses = [literal] if literal is not None else await resolver.resolve(target.host, target.port)
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                shown = "" if literal is not None else f"{target.host} resolves to "
                raise _refuse(f"{shown}{address}, a {reason} address; {what} may only use public addresses "
                              f"(operators can set {setting}=true for local development)")
    return addresses


async def check_endpoint_url(url: str, resolver: Resolver, *, allow_private: bool) -> EndpointUrl:
    """Validation when an endpoint is saved: syntax, literal and currently resolved addresses.

    A host that does not resolve right now is accepted (DNS may be set up later); every
    delivery attempt checks the addresses again anyway.
    """
    target = parse_endpoint_url(url)
    with contextlib.suppress(DestinationUnresolvable):
        await resolve_destination(target, resolver, allow_private=allow_private)
    return target
