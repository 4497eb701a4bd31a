"""Structural introspection of a database schema, for "migrations == schema.sql" tests."""

from __future__ import annotations

from typing import Any

import asyncpg

IGNORED_TABLES = ("schema_migrations",)

QUERIES: dict[str, str] = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default, ordinal_position
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> ALL($1::text[])
        ORDER BY table_name, column_name
    """,
    "tables": """
        SELECT table_name, table_type FROM information_schema.tables
        WHERE table_schema = 'public' AND table_name <> ALL($1::text[]) ORDER BY table_name
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> ALL($1::text[]) ORDER BY indexname
    """,
    "constraints": """
        SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype,
               pg_get_constraintdef(c.oid) AS definition
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> ALL($1::text[])
        ORDER BY 1, 2
    """,
    "functions": """
        SELECT p.proname, pg_get_function_arguments(p.oid) AS args,
               pg_get_function_result(p.oid) AS result, p.prosrc
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND $1::text[] IS NOT NULL ORDER BY 1, 2
    """,
    "triggers": """
        SELECT c.relname AS table_name, t.tgname, pg_get_triggerdef(t.oid) AS definition
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal AND c.relname <> ALL($1::text[])
        ORDER BY 1, 2
    """,
    "views": """
        SELECT viewname, definition FROM pg_views
        WHERE schemaname = 'public' AND $1::text[] IS NOT NULL ORDER BY viewname
    """,
}


async def introspect(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [dict(row) for row in await conn.fetch(query, list(IGNORED_TABLES))]
        for name, query in QUERIES.items()
    }
