"""The ``bisnesgpt`` command."""

from __future__ import annotations

import typer

from bisnesgpt import __version__
from bisnesgpt.cli import db, demo, inbound, monitoring, phones, processes, tenancy
from bisnesgpt.cli.common import command_group
from bisnesgpt.cli.sandbox import sandbox_app
from bisnesgpt.cli.secrets import secrets_app
from bisnesgpt.cli.usage import usage_command
from bisnesgpt.cli.webhooks import webhooks_app

app = command_group(
    name="bisnesgpt",
    help="bisnesgpt: self-hosted, multi-tenant WhatsApp messaging gateway.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(db.migrate)
app.command()(processes.run)
app.command()(processes.start)
app.command()(demo.demo)
app.command()(monitoring.status)
app.command()(monitoring.doctor)
app.command("usage")(usage_command)
app.add_typer(db.services_app, name="services")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(tenancy.companies_app, name="companies")
app.add_typer(tenancy.keys_app, name="keys")
app.add_typer(phones.phones_app, name="phones")
app.add_typer(secrets_app, name="secrets")
app.add_typer(inbound.inbound_app, name="inbound")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """The console-script entry point (``bisnesgpt`` and ``python -m bisnesgpt``)."""
    app()
