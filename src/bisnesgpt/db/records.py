"""Rows read into frozen dataclasses: each record takes the columns it has fields for.

A query may answer more columns than a record needs (``SELECT *``, ``RETURNING *``, or a
join that adds a few): ``from_row`` picks the record's fields by name, so a column list is
written once, as the dataclass, and not copied into every query.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import Any, ClassVar, Protocol, Self


class Row(Protocol):
    """What ``from_row`` reads: values by column name (an ``asyncpg.Record``, or a mapping in tests)."""

    def __getitem__(self, key: str, /) -> Any: ...


class RowSource(Protocol):
    """Where ``fetch_one`` reads a row: an ``asyncpg.Connection`` or the ``Database`` pool."""

    def fetchrow(self, query: str, *args: Any) -> Awaitable[Row | None]:
        """The first row ``query`` answers with ``args`` bound, or None."""
        ...


class RowRecord:
    """Base of a frozen ``@dataclass`` read from a database row by field name."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def from_row(cls, row: Row) -> Self:
        """The record of ``row``: one value per field, by name; other columns are ignored."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    @classmethod
    async def fetch_one(cls, conn: RowSource, query: str, *args: object) -> Self | None:
        """The record of the row ``query`` answers, or None when it answers none."""
        row = await conn.fetchrow(query, *args)
        return cls.from_row(row) if row is not None else None
