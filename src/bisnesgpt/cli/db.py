"""``bisnesgpt migrate`` and ``bisnesgpt services up|down|status``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import typer

from bisnesgpt.cli.common import cli_errors, command_group, console, settings_or_exit
from bisnesgpt.config import mask_url
from bisnesgpt.core.logging import setup_logging

if TYPE_CHECKING:
    from bisnesgpt.infra.embedded import EmbeddedServer


def migrate(
    dry_run: bool = typer.Option(False, "--dry-run", help="List pending migrations; change nothing."),
) -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    from bisnesgpt.db.migrate import migrate as run_migrations
    from bisnesgpt.infra.services import ensure_services

    settings = settings_or_exit()
    setup_logging("migrate", settings.log_level, settings.log_format)
    with cli_errors():
        services = ensure_services(settings, need_redis=False)
        try:
            report = asyncio.run(run_migrations(services.database_url, dry_run=dry_run,
                                                on_progress=console.print))
        finally:
            services.close()
    if dry_run:
        if report.pending:
            console.print(f"{len(report.pending)} pending migration(s):")
            for migration in report.pending:
                console.print(f"  {migration.filename}")
        else:
            console.print(f"nothing pending ({report.already_applied} applied)")
        return
    console.print(f"applied {len(report.applied)}, already applied {report.already_applied}")


services_app = command_group(help="Embedded PostgreSQL/Valkey for development (no DATABASE_URL/REDIS_URL).")


@services_app.command("up")
def services_up() -> None:
    """Start the embedded servers detached; they keep running until `services down`."""
    from bisnesgpt.infra.services import ensure_services

    settings = settings_or_exit()
    setup_logging("services", settings.log_level, settings.log_format)
    with cli_errors():
        services = ensure_services(settings, detached=True)
    console.print(f"DATABASE_URL={services.database_url}")
    console.print(f"REDIS_URL={services.redis_url}")


@services_app.command("down")
def services_down() -> None:
    """Stop the embedded servers of this data directory (if running)."""
    from bisnesgpt.infra.services import embedded_postgres, embedded_redis

    settings = settings_or_exit()
    setup_logging("services", settings.log_level, settings.log_format)
    with cli_errors():
        redis_stopped = embedded_redis(settings).stop()
        pg_stopped = embedded_postgres(settings).stop()
    console.print(f"Valkey: {'stopped' if redis_stopped else 'not running'}")
    console.print(f"PostgreSQL: {'stopped' if pg_stopped else 'not running'}")


@services_app.command("status")
def services_status() -> None:
    """Show where PostgreSQL and Redis are, embedded or external."""
    from bisnesgpt.infra.services import embedded_postgres, embedded_redis

    settings = settings_or_exit()
    logging.disable(logging.INFO)
    console.print(_whereabouts("PostgreSQL", settings.database_url, embedded_postgres(settings)))
    console.print(_whereabouts("Redis", settings.effective_redis_url, embedded_redis(settings)))


def _whereabouts(label: str, configured: str | None, embedded: EmbeddedServer) -> str:
    if configured:
        return f"{label}: external {mask_url(configured)}"
    running = embedded.running()
    state = f"running pid {running[0]}, {embedded.url(running[1])}" if running else "stopped"
    return f"{label}: embedded in {embedded.data_dir}: {state}"
