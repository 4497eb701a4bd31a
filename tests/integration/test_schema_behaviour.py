"""What the schema's functions, trigger and view do (moving timestamps, never sleeping)."""

from __future__ import annotations

import itertools

import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.states import allowed

pytestmark = pytest.mark.integration


async def _company(db: Database, company_id: str = "acme") -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", company_id)


@pytest.mark.parametrize(
    ("connection_type", "process_name"),
    [("wwebjs", "wwebjs"), (None, "wwebjs"), ("meta_direct", "meta"), ("meta_embedded", "meta"),
     ("360dialog", "meta")],
)
async def test_trigger_sets_process_name(db: Database, connection_type: str | None, process_name: str) -> None:
    await _company(db)
    got = await db.fetchval(
        "INSERT INTO phone_configs (company_id, phone_index, connection_type) VALUES ('acme', 0, $1) "
        "RETURNING process_name", connection_type,
    )
    assert got == process_name


async def test_trigger_follows_a_connection_type_change(db: Database) -> None:
    await _company(db)
    await db.execute("INSERT INTO phone_configs (company_id, phone_index) VALUES ('acme', 1)")
    assert await db.fetchval("SELECT process_name FROM phone_configs WHERE phone_index = 1") == "wwebjs"
    await db.execute("UPDATE phone_configs SET connection_type = '360dialog' WHERE phone_index = 1")
    assert await db.fetchval("SELECT process_name FROM phone_configs WHERE phone_index = 1") == "meta"
    await db.execute("UPDATE phone_configs SET connection_type = NULL WHERE phone_index = 1")
    assert await db.fetchval("SELECT process_name FROM phone_configs WHERE phone_index = 1") == "wwebjs"


async def test_update_process_health_counts_errors_and_resets_on_healthy(db: Database) -> None:
    async def beat(status: str) -> int:
        await db.execute("SELECT update_process_health('meta', $1, 5, 100, 1.5, 2)", status)
        return int(await db.fetchval("SELECT error_count FROM process_health WHERE process_name = 'meta'"))

    assert await beat("healthy") == 0
    assert await beat("error") == 1
    assert await beat("error") == 2
    assert await beat("degraded") == 2
    assert await beat("healthy") == 0
    row = await db.fetchrow("SELECT * FROM process_health WHERE process_name = 'meta'")
    assert row is not None
    assert (row["uptime_seconds"], row["memory_usage_mb"], row["active_connections"]) == (5, 100, 2)
    assert float(row["cpu_usage_percent"]) == 1.5


async def test_update_process_health_creates_instance_rows(db: Database) -> None:
    await db.execute("SELECT update_process_health('api-2', 'healthy', 1, 1, 0, 0, 4242)")
    row = await db.fetchrow("SELECT role, instance_id, pid FROM process_health WHERE process_name = 'api-2'")
    assert row is not None and (row["role"], row["instance_id"], row["pid"]) == ("api", 2, 4242)


@pytest.mark.parametrize(
    ("age_seconds", "expected"),
    [(0, "healthy"), (29, "healthy"), (31, "degraded"), (59, "degraded"), (61, "down"), (3600, "down")],
)
async def test_view_status_boundaries(db: Database, age_seconds: int, expected: str) -> None:
    await db.execute(
        "UPDATE process_health SET last_heartbeat = now() - make_interval(secs => $1) WHERE process_name = 'api'",
        age_seconds,
    )
    row = await db.fetchrow(
        "SELECT computed_status, seconds_since_heartbeat FROM v_process_health_overview WHERE process_name = 'api'"
    )
    assert row is not None
    assert row["computed_status"] == expected
    assert abs(float(row["seconds_since_heartbeat"]) - age_seconds) < 5


async def test_view_reports_down_before_any_heartbeat_and_counts_bots(db: Database) -> None:
    await _company(db)
    await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) VALUES "
                     "('acme', 0, 'wwebjs'), ('acme', 1, 'meta_direct'), ('acme', 2, '360dialog')")
    rows = {r["process_name"]: r for r in await db.fetch("SELECT * FROM v_process_health_overview")}
    assert rows["wwebjs"]["computed_status"] == "down"
    assert rows["wwebjs"]["active_bots"] == 1
    assert rows["meta"]["active_bots"] == 2
    assert rows["api"]["active_bots"] == 0


async def test_cleanup_functions_keep_what_they_must(db: Database) -> None:
    await db.execute("""
        INSERT INTO process_metrics (process_name, metric_name, metric_value, timestamp) VALUES
            ('api', 'old', 1, now() - interval '8 days'), ('api', 'recent', 1, now() - interval '6 days')
    """)
    await db.execute("""
        INSERT INTO process_events (process_name, event_type, severity, timestamp) VALUES
            ('api', 'old-info', 'info', now() - interval '31 days'),
            ('api', 'old-warning', 'warning', now() - interval '31 days'),
            ('api', 'old-error', 'error', now() - interval '31 days'),
            ('api', 'old-critical', 'critical', now() - interval '400 days'),
            ('api', 'recent-info', 'info', now() - interval '29 days')
    """)
    assert await db.fetchval("SELECT cleanup_old_process_metrics()") == 1
    assert await db.fetchval("SELECT cleanup_old_process_events()") == 2
    metrics = {r["metric_name"] for r in await db.fetch("SELECT metric_name FROM process_metrics")}
    events = {r["event_type"] for r in await db.fetch("SELECT event_type FROM process_events")}
    assert metrics == {"recent"}
    assert events == {"old-error", "old-critical", "recent-info"}


async def test_log_and_record_functions(db: Database) -> None:
    event_id = await db.fetchval("SELECT log_process_event('wwebjs', 'crash', '{\"code\": -9}'::jsonb, 'error')")
    row = await db.fetchrow("SELECT * FROM process_events WHERE id = $1", event_id)
    assert row is not None and row["event_data"] == {"code": -9} and row["severity"] == "error"
    metric_id = await db.fetchval("SELECT record_process_metric('meta', 'rss_mb', 123.5)")
    metric = await db.fetchrow("SELECT * FROM process_metrics WHERE id = $1", metric_id)
    assert metric is not None and metric["metric_value"] == 123.5 and metric["metric_type"] == "gauge"


STATUSES = ("accepted", "queued", "sending", "sent", "delivered", "read", "failed", "cancelled")


async def test_status_rule_in_sql_matches_python(db: Database) -> None:
    rows = await db.fetch(
        "SELECT a, b, message_status_allows(a, b) AS ok FROM unnest($1::text[]) a, unnest($1::text[]) b",
        list(STATUSES),
    )
    sql = {(r["a"], r["b"]): r["ok"] for r in rows}
    for a, b in itertools.product(STATUSES, STATUSES):
        assert sql[(a, b)] is allowed(a, b), (a, b)
    assert sql[("read", "delivered")] is False
    assert sql[("sent", "read")] is True
    assert sql[("failed", "sent")] is False
