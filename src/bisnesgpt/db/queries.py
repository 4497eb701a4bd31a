"""Named SQL queries, kept in one ``queries.sql`` per package (procrastinate's ``sql/queries.sql``).

A query file is a sequence of blocks, each opened by a header line naming the query::

    -- claim_for_send --
    -- Mark a message sending for one more attempt (any comment lines describe it)
    WITH prev AS (...)
    SELECT ...

``load_queries("bisnesgpt.messaging")`` parses the package's file once and answers
``SQL.claim_for_send``; a name that is not in the file raises ``AttributeError`` at the
first use, and ``tests/unit/test_queries.py`` checks every file against the code that uses
it (no unknown name, no unused query). SQL is never assembled from strings at run time:
what varies is a parameter (``$1``), never text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from importlib import resources

QUERY_FILE = "queries.sql"
_HEADER = re.compile(r"^-- ([a-z][a-z0-9_]*) --\s*$")


class Queries(Mapping[str, str]):
    """The queries of one package, by name (``SQL.name`` or ``SQL["name"]``)."""

    def __init__(self, package: str, queries: Mapping[str, str]) -> None:
        self._package = package
        self._queries = dict(queries)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"{self._package}/{QUERY_FILE} has no query named {name!r}") from None

    def __getitem__(self, name: str) -> str:
        return self._queries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)

    def __repr__(self) -> str:
        return f"Queries({self._package!r}, {len(self._queries)} queries)"


def parse_queries(text: str, *, source: str = QUERY_FILE) -> dict[str, str]:
    """Split a query file into ``{name: sql}``; header comments are kept out of the SQL."""
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def close() -> None:
        if name is None:
            return
        body = "\n".join(lines).strip()
        if not body:
            raise ValueError(f"{source}: query {name!r} is empty")
        queries[name] = body + "\n"

    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            close()
            name, lines = header.group(1), []
            if name in queries:
                raise ValueError(f"{source}:{number}: query {name!r} defined twice")
            continue
        if name is None:
            if line.strip() and not line.startswith("--"):
                raise ValueError(f"{source}:{number}: SQL before the first '-- name --' header")
            continue
        if not lines and line.startswith("--"):
            continue  # the description under the header
        lines.append(line)
    close()
    return queries


@functools.cache
def load_queries(package: str) -> Queries:
    """The named queries of ``package`` (e.g. ``"bisnesgpt.messaging"``), parsed once per process."""
    source = resources.files(package).joinpath(QUERY_FILE)
    return Queries(package, parse_queries(source.read_text(encoding="utf-8"), source=f"{package}/{QUERY_FILE}"))
