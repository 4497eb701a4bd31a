"""Migrations: fresh migrate == schema.sql (structurally), idempotent, safe concurrently."""

from __future__ import annotations

import asyncio
from importlib import resources

import asyncpg
import pytest

from bisnesgpt.db.migrate import discover, migrate
from tests.support.schema import introspect

pytestmark = pytest.mark.integration

# The original system's names operators query (ARCHITECTURE §4): they must all exist.
ORIGINAL_TABLES = {
    "phone_configs", "phone_status", "messages", "conversation_sessions", "process_health",
    "process_metrics", "process_events", "companies", "api_keys",
}
PHONE_CONFIG_COLUMNS = {
    "id", "company_id", "phone_index", "connection_type", "dialog360_client_id", "dialog360_channel_id",
    "api_key_encrypted", "display_phone_number", "status", "meta_phone_number_id", "meta_waba_id",
    "meta_access_token_encrypted", "process_name", "created_at", "updated_at",
}
ORIGINAL_FUNCTIONS = {
    "log_process_event", "record_process_metric", "update_process_health", "cleanup_old_process_metrics",
    "cleanup_old_process_events", "update_process_name_on_connection_type",
}
LOOKUP_INDEXES = {
    "idx_phone_configs_connection_type", "idx_phone_configs_process", "idx_messages_external_id",
    "idx_phone_configs_meta_phone_number_id", "idx_phone_status_process",
}


async def test_fresh_migrate_equals_schema_sql(empty_database_url: str, pg_server_url: str) -> None:
    from tests.conftest import create_database, drop_database
    from tests.support.servers import unique_name

    await migrate(empty_database_url)
    other = unique_name("bgpt_schema")
    other_url = await create_database(pg_server_url, other)
    try:
        conn = await asyncpg.connect(other_url)
        try:
            await conn.execute(resources.files("bisnesgpt.db").joinpath("schema.sql").read_text())
            expected = await introspect(conn)
        finally:
            await conn.close()
        conn = await asyncpg.connect(empty_database_url)
        try:
            actual = await introspect(conn)
        finally:
            await conn.close()
    finally:
        await drop_database(pg_server_url, other)
    for section in expected:
        assert actual[section] == expected[section], f"{section} differ between migrations and schema.sql"


async def test_schema_has_the_original_names(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        schema = await introspect(conn)
        seeded = {r["process_name"] for r in await conn.fetch("SELECT process_name FROM process_health")}
    finally:
        await conn.close()
    tables = {t["table_name"] for t in schema["tables"]}
    assert ORIGINAL_TABLES <= tables
    assert "v_process_health_overview" in {v["viewname"] for v in schema["views"]}
    phone_columns = {c["column_name"] for c in schema["columns"] if c["table_name"] == "phone_configs"}
    assert PHONE_CONFIG_COLUMNS <= phone_columns
    assert ORIGINAL_FUNCTIONS <= {f["proname"] for f in schema["functions"]}
    assert "trigger_set_process_name" in {t["tgname"] for t in schema["triggers"]}
    assert LOOKUP_INDEXES <= {i["indexname"] for i in schema["indexes"]}
    uniques = {c["definition"] for c in schema["constraints"] if c["table_name"] == "phone_configs"}
    assert "UNIQUE (company_id, phone_index)" in uniques
    message_uniques = {c["definition"] for c in schema["constraints"] if c["table_name"] == "messages"}
    assert "UNIQUE (message_id, company_id)" in message_uniques
    assert seeded == {"api", "wwebjs", "meta"}


async def test_migrating_twice_changes_nothing(empty_database_url: str) -> None:
    first = await migrate(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    before = await introspect(conn)
    await conn.close()
    second = await migrate(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    after = await introspect(conn)
    rows = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    await conn.close()
    assert len(first.applied) == len(discover())
    assert second.applied == [] and second.already_applied == len(discover())
    assert before == after
    assert rows == len(discover())


async def test_concurrent_migrates_apply_each_file_once(empty_database_url: str) -> None:
    reports = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    applied_counts = sorted(len(r.applied) for r in reports)
    assert applied_counts == [0, 0, 0, len(discover())]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(discover())
        assert await conn.fetchval("SELECT count(*) FROM process_health") == 3
    finally:
        await conn.close()


async def test_dry_run_lists_pending_and_changes_nothing(empty_database_url: str) -> None:
    report = await migrate(empty_database_url, dry_run=True)
    assert [m.filename for m in report.pending] == [m.filename for m in discover()]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
        assert await conn.fetchval("SELECT to_regclass('messages')") is None
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(empty_database_url: str) -> None:
    from bisnesgpt.core.errors import MigrationError

    await migrate(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_database_url)
