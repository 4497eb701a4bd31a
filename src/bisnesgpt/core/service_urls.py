"""Service URLs that name more than one server: Sentinel-managed Redis, PostgreSQL standbys.

Pure parsing and building (no clients), so the settings can validate and normalise them.

* ``redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/<db>]`` names the
  sentinels of a master (``?sentinel_password=…`` when the sentinels need their own
  password); ``infra.redis`` builds clients that follow the master across failovers.
* ``postgresql://user@host1:5432,host2:5432/db`` lists every server that may be the
  primary; asyncpg (and neonize's lib/pq) tries them in order. With
  ``target_session_attrs=read-write`` (added when a URL names more than one host and does not
  say otherwise) only a server that accepts writes is kept, so after a standby is promoted
  every new connection finds it, and a standby still in recovery is never used for writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelTarget:
    """Where a Sentinel-managed master is found: the sentinels and the master's name."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def sentinel_target(url: str) -> SentinelTarget | None:
    """The Sentinel target of a ``redis+sentinel://`` URL; None for any other URL.

    Raises ValueError for a malformed Sentinel URL (no sentinels, no master name, a bad port).
    """
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return None
    rest = url[len(SENTINEL_SCHEME) + 3:]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, sep, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    sentinels = [_host_port(hostport, 26379, "sentinel") for hostport in filter(None, netloc.split(","))]
    segments = [segment for segment in path.split("/") if segment]
    if not sentinels:
        raise ValueError("names no sentinel (host:port[,host:port...])")
    if not segments:
        raise ValueError("names no master (redis+sentinel://hosts/<master>[/<db>])")
    try:
        db = int(segments[1]) if len(segments) > 1 else 0
    except ValueError as exc:
        raise ValueError("has an invalid database number") from exc
    sentinel_password = parse_qs(query).get("sentinel_password", [None])[0]
    return SentinelTarget(tuple(sentinels), unquote(segments[0]), db, username, password, sentinel_password)


def sentinel_url(sentinels: Sequence[str], master: str, *, db: int = 0, password: str | None = None,
                 sentinel_password: str | None = None) -> str:
    """The ``redis+sentinel://`` URL of ``master`` behind ``sentinels`` (``host:port`` strings)."""
    auth = f":{quote(password, safe='')}@" if password else ""
    query = f"?sentinel_password={quote(sentinel_password, safe='')}" if sentinel_password else ""
    return f"{SENTINEL_SCHEME}://{auth}{','.join(sentinels)}/{quote(master, safe='')}/{db}{query}"


TARGET_ATTRS = "target_session_attrs"


def database_hosts(url: str) -> list[tuple[str, int]]:
    """Every (host, port) a PostgreSQL URL names, in order; ValueError when one is malformed."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return [_host_port(hostport, 5432, "host") for hostport in netloc.split(",")] if netloc else []


def _host_port(hostport: str, default_port: int, what: str) -> tuple[str, int]:
    """``host[:port]`` as (host, port); ValueError naming ``what`` when either part is malformed."""
    parts = urlsplit("//" + hostport)
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValueError(f"{what} {hostport!r} has an invalid port") from exc
    if not parts.hostname:
        raise ValueError(f"{what} {hostport!r} has no host")
    return parts.hostname, port


def writable_target(url: str) -> str:
    """``url`` with ``target_session_attrs=read-write`` when it names several hosts and no target."""
    if len(database_hosts(url)) < 2:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == TARGET_ATTRS for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, (TARGET_ATTRS, "read-write")])))
