"""Plain numbered ``.sql`` migrations with a tracking table and an advisory lock.

Files live in ``bisnesgpt/db/migrations/NNNN_name.sql``; each is applied in its own
transaction and recorded in ``schema_migrations`` with a checksum. A session-level advisory
lock serialises concurrent migrators: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import asyncpg

from bisnesgpt.core.errors import DatabaseUnavailable, MigrationError
from bisnesgpt.db.pool import CONNECTION_ERRORS
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.db")

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary but fixed: every bisnesgpt migrator takes the same lock.
MIGRATION_LOCK_KEY = 0x62697373_6D696772  # "bissmigr"


@dataclass(frozen=True)
class Migration:
    """One shipped migration file: ``NNNN_name.sql`` and its SQL."""

    version: int
    name: str
    sql: str

    @property
    def filename(self) -> str:
        """The file's name, as shipped."""
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL: an applied migration whose file changed is refused."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass
class MigrationReport:
    """What a run applied, what is still pending, and how many were applied before."""

    applied: list[Migration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    already_applied: int = 0


def discover() -> list[Migration]:
    """All migration files shipped in the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("bisnesgpt.db.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if not match:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


async def migrate(
    dsn: str,
    *,
    dry_run: bool = False,
    on_progress: Callable[[str], None] | None = None,
    connect_timeout: float = 10.0,
) -> MigrationReport:
    """Apply pending migrations (or, with ``dry_run``, only list them)."""
    say = on_progress or (lambda _msg: None)
    try:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL to migrate: {exc}") from exc
    try:
        await conn.execute(SQL.lock_migrations, MIGRATION_LOCK_KEY)
        try:
            return await _migrate_locked(conn, dry_run=dry_run, say=say)
        finally:
            await conn.execute(SQL.unlock_migrations, MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def pending(conn: asyncpg.Connection) -> MigrationReport:
    """What ``migrate`` would apply, changing nothing (MigrationError if a file was edited)."""
    return await _plan(conn, create=False)


async def _plan(conn: asyncpg.Connection, *, create: bool) -> MigrationReport:
    report = MigrationReport()
    exists = await conn.fetchval(SQL.migrations_table_exists)
    if not exists and create:
        await conn.execute(SQL.create_migrations_table)
        exists = True
    applied = {r["version"]: r for r in await conn.fetch(SQL.applied_migrations)} if exists else {}
    for migration in discover():
        done = applied.get(migration.version)
        if done is not None:
            if done["checksum"] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.filename} was changed after it was applied "
                    f"(checksum {done['checksum'][:12]} in the database); add a new migration instead"
                )
            report.already_applied += 1
            continue
        report.pending.append(migration)
    return report


async def _migrate_locked(
    conn: asyncpg.Connection, *, dry_run: bool, say: Callable[[str], None]
) -> MigrationReport:
    report = await _plan(conn, create=not dry_run)
    if dry_run:
        return report
    total = len(report.pending)
    for number, migration in enumerate(report.pending, start=1):
        say(f"[{number}/{total}] applying {migration.filename}")
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(SQL.record_migration, migration.version, migration.name, migration.checksum)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{migration.filename} failed: {exc}") from exc
        report.applied.append(migration)
    report.pending = []
    return report
