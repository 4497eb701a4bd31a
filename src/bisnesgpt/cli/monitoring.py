"""``bisnesgpt status`` (a pm2-like table) and ``bisnesgpt doctor`` (the monitoring checklist).

Both are read-only: they find PostgreSQL/Redis from the settings or the running embedded
servers, never start anything, and take ``--json`` for scripts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import TypedDict

import typer
from rich import box
from rich.table import Table

from bisnesgpt.cli.common import cli_errors, console, settings_or_exit
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ServiceUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.health.doctor import CheckResultJson, Doctor, DoctorOptions, ServersJson
from bisnesgpt.health.overview import Overview, ProcessView, fetch_overview
from bisnesgpt.health.probe import Probe, health_urls, probe_all
from bisnesgpt.infra.services import locate_services


class DoctorJson(TypedDict):
    """``bisnesgpt doctor --json``."""

    ok: bool
    checkedAt: str
    servers: ServersJson
    checks: list[CheckResultJson]


STATUS_STYLE = {"healthy": "green", "degraded": "yellow", "draining": "yellow", "starting": "yellow",
                "unhealthy": "red", "unresponsive": "red", "down": "red", "disabled": "dim", "partial": "yellow"}


def status(
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    host: str = typer.Option(None, "--host", help="Where the roles' ports are (default: HOST, or 127.0.0.1)."),
    legacy: bool = typer.Option(False, "--legacy", help="Expect the legacy all-in-one process instead of the roles."),
) -> None:
    """Every process: role, instance, pid, status, uptime, restarts, memory, CPU, last heartbeat."""
    settings = settings_or_exit()
    logging.disable(logging.WARNING)
    with cli_errors():
        overview, probes = asyncio.run(_gather_status(settings, host=host, legacy=legacy))
    if json_output:
        body = overview.as_dict() | {"http": {role: p.as_dict() for role, p in probes.items()}}
        typer.echo(json.dumps(body, default=str, indent=2))
        return
    console.print(_status_table(overview, probes))
    verdict = "[green]all enabled roles healthy[/]" if overview.healthy else "[red]not all enabled roles healthy[/]"
    roles = ", ".join(f"{name} [{STATUS_STYLE.get(r.status, '')}]{r.status}[/]" for name, r in overview.roles.items())
    console.print(f"{verdict} — {roles}")


async def _gather_status(settings: Settings, *, host: str | None, legacy: bool) -> tuple[Overview, dict[str, Probe]]:
    located = locate_services(settings)
    if located.database_url is None:
        raise ServiceUnavailable("; ".join(located.notes) or "no DATABASE_URL")
    db = Database(located.database_url, max_size=1, min_size=0, application_name="bisnesgpt-status",
                  connect_timeout=3.0)
    await db.open()
    try:
        overview, probes = await asyncio.gather(
            fetch_overview(db, settings, legacy=legacy),
            probe_all(health_urls(settings, host=host, legacy=legacy), timeout=2.0),
        )
    finally:
        await db.close()
    return overview, {str(role): probe for role, probe in probes.items()}


def _status_table(overview: Overview, probes: dict[str, Probe]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, show_edge=False, pad_edge=False)
    for column, justify in (("role", "left"), ("inst", "right"), ("pid", "right"), ("status", "left"),
                            ("uptime", "right"), ("↺", "right"), ("memory", "right"), ("cpu", "right"),
                            ("heartbeat", "right"), ("by", "left"), ("http", "left")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    stale = duplicated = False
    for process in overview.processes:
        probe = probes.get(process.role)
        style = STATUS_STYLE.get(process.status, "")
        stale = stale or not process.expected
        duplicated = duplicated or process.duplicate
        marks = ("" if process.expected else "*") + ("!" if process.duplicate else "")
        table.add_row(
            process.role, f"{process.instance_id}{marks}", str(process.pid or "-"),
            f"[{style}]{process.status}[/]", _duration(process.uptime_s), str(process.restarts),
            f"{process.memory_mb} MB", f"{process.cpu_percent:.0f}%", _heartbeat(process),
            process.supervisor or "-", str(probe.status_code or "down") if probe and process.expected else "-",
        )
    notes = ["↺ restarts under its current supervisor"]
    if stale:
        notes.append("* not expected by the current settings")
    if duplicated:
        notes.append("! another living process has the same name (a second orchestrator?)")
    table.caption = "; ".join(notes)
    return table


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _heartbeat(process: ProcessView) -> str:
    if process.heartbeat_age_s is None:
        return "never"
    return f"{_duration(process.heartbeat_age_s)} ago" if process.heartbeat_age_s >= 10 else \
        f"{process.heartbeat_age_s:.1f}s ago"


def _servers_line(servers: ServersJson) -> str:
    """Which servers doctor reads and which the running processes report, on one line."""
    theirs = ", ".join(servers["processDatabase"]) or "-"
    theirs_redis = ", ".join(servers["processRedis"]) or "-"
    return (f"looking at: database {servers['database'] or '-'} (processes: {theirs}); "
            f"redis {servers['redis'] or '-'} (processes: {theirs_redis})")


def doctor(
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of one line per check."),
    since_minutes: float = typer.Option(10.0, "--since-minutes", help="Window for recent error events and sends."),
    stuck_minutes: float = typer.Option(5.0, "--stuck-minutes",
                                        help="A message queued/sending longer than this is stuck."),
    max_queue_backlog: int = typer.Option(1000, "--max-queue-backlog", help="Waiting jobs per queue that count as "
                                                                           "backing up."),
    max_queue_age: float = typer.Option(300.0, "--max-queue-age", help="Seconds the oldest waiting job may wait."),
    host: str = typer.Option(None, "--host", help="Where the roles' ports are (default: HOST, or 127.0.0.1)."),
    legacy: bool = typer.Option(False, "--legacy", help="Check the legacy all-in-one process instead of the roles."),
) -> None:
    """The monitoring checklist: one pass/fail line per check with its evidence; exit 0 only if all pass."""
    settings = settings_or_exit()
    logging.disable(logging.WARNING)
    options = DoctorOptions(since_minutes=since_minutes, stuck_minutes=stuck_minutes,
                            max_queue_backlog=max_queue_backlog, max_queue_age_s=max_queue_age,
                            host=host, legacy=legacy)
    with cli_errors():
        located = locate_services(settings)
        checklist = Doctor(settings, database_url=located.database_url, redis_url=located.redis_url,
                           options=options, notes=located.notes)
        results = asyncio.run(checklist.run())
    all_ok = all(r.ok for r in results)
    servers = checklist.servers()
    if json_output:
        body: DoctorJson = {"ok": all_ok, "checkedAt": datetime.now(UTC).isoformat(), "servers": servers,
                            "checks": [r.as_dict() for r in results]}
        typer.echo(json.dumps(body, default=str, indent=2))
    else:
        console.print(_servers_line(servers), highlight=False, soft_wrap=True)
        for result in results:
            mark = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
            console.print(f"{mark}  {result.name:<20} {result.evidence}", highlight=False, soft_wrap=True)
        passed = sum(r.ok for r in results)
        console.print(f"{passed}/{len(results)} checks passed")
    raise typer.Exit(0 if all_ok else 1)
