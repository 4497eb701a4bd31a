"""PostgreSQL URLs naming several servers: a primary and its standbys.

``postgresql://user@host1:5432,host2:5432/db`` lists every server that may be the primary;
asyncpg tries them in order. With ``target_session_attrs=read-write`` (added here when a URL
names more than one host and does not say otherwise) it only keeps a connection to a server
that accepts writes, so after a standby is promoted every new connection finds it, and a
standby still in recovery is never used for the writes every process makes.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TARGET_ATTRS = "target_session_attrs"


def database_hosts(url: str) -> list[tuple[str, int]]:
    """Every (host, port) a PostgreSQL URL names, in order; ValueError when one is malformed."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    hosts = []
    for hostport in netloc.split(",") if netloc else []:
        parts = urlsplit("//" + hostport)
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise ValueError(f"host {hostport!r} has an invalid port") from exc
        if not parts.hostname:
            raise ValueError(f"host {hostport!r} is empty")
        hosts.append((parts.hostname, port))
    return hosts


def writable_target(url: str) -> str:
    """``url`` with ``target_session_attrs=read-write`` when it names several hosts and no target."""
    if len(database_hosts(url)) < 2:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == TARGET_ATTRS for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, (TARGET_ATTRS, "read-write")])))
