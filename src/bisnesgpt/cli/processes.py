"""``bisnesgpt run <role>`` and ``bisnesgpt start`` (the orchestrator)."""

from __future__ import annotations

import typer

from bisnesgpt.cli.common import cli_errors, settings_or_exit
from bisnesgpt.config import ROLES


def run(role: str = typer.Argument(..., help="api | wwebjs | meta | legacy")) -> None:
    """Run one process role in the foreground (what the orchestrator and PM2 spawn)."""
    if role not in ROLES:
        typer.echo(f"bisnesgpt: unknown role {role!r}; expected one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    from bisnesgpt.processes.runtime import run_role

    settings = settings_or_exit(process_name=role)
    with cli_errors():
        status = run_role(role, settings)
    raise typer.Exit(status)


def start() -> None:
    """Migrate, then start and supervise every enabled role (embedded servers if none configured).

    Refused (exit 1, one line naming its pid) while another orchestrator runs on the same DATA_DIR.
    """
    from bisnesgpt.orchestrator.lock import OrchestratorRunning
    from bisnesgpt.orchestrator.supervisor import run_orchestrator

    settings = settings_or_exit()
    with cli_errors():
        try:
            status = run_orchestrator(settings)
        except OrchestratorRunning as exc:
            typer.echo(f"bisnesgpt: {exc.detail}", err=True)
            raise typer.Exit(1) from None
    raise typer.Exit(status)
