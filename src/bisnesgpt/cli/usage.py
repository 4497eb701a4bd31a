"""``bisnesgpt usage COMPANY``: what ``GET /api/v1/usage`` answers, as tables (or ``--json``, the same JSON)."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table

from bisnesgpt.api.schemas.usage import UsageView
from bisnesgpt.api.usage_routes import period
from bisnesgpt.cli.common import COMPANY_HELP, cli_errors, console, err_console, one_company
from bisnesgpt.cli.database import run_with_database
from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.usage import UsageReport, usage
from bisnesgpt.tenancy.store import get_company

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]
FROM_OPTION = typer.Option(None, "--from", formats=DATE_FORMATS,
                           help="Start, inclusive (default: 30 days before --to); UTC unless given")
TO_OPTION = typer.Option(None, "--to", formats=DATE_FORMATS, help="End, exclusive (default: now)")


def usage_command(
    company: str | None = typer.Argument(None, help=COMPANY_HELP),
    company_option: str | None = typer.Option(None, "--company", "-c", hidden=True),
    start: datetime | None = FROM_OPTION,
    end: datetime | None = TO_OPTION,
    every_company: bool = typer.Option(False, "--all", help="Every company (instead of COMPANY)"),
    as_json: bool = typer.Option(False, "--json", help="The JSON GET /api/v1/usage answers"),
) -> None:
    """Usage: Cloud API conversations and billable messages, message counts per status."""
    company_id = one_company(company, company_option, required=not every_company)
    if every_company and company_id is not None:
        err_console.print("bisnesgpt: give COMPANY or --all, not both")
        raise typer.Exit(2)
    with cli_errors():
        begin, stop = period(start, end)

    async def fetch(db: Database, _settings: Settings) -> UsageReport:
        async with db.connection() as conn:
            if company_id is not None:
                await get_company(conn, company_id)  # an unknown company is an error, not an empty report
            return await usage(conn, company_id, begin, stop)

    report = run_with_database(fetch)
    if as_json:
        typer.echo(json.dumps(UsageView.of(report).model_dump(by_alias=True), indent=2))
        return
    _print(report)


def _print(report: UsageReport) -> None:
    scope = report.company_id or "every company"
    console.print(f"usage of {scope} from {report.start.isoformat()} to {report.end.isoformat()}")
    billing = Table("company", "phone", "category", "pricing model", "conversations", "billable", "messages",
                    title="Cloud API billing (Meta's pricing data, by when sent)")
    for b in report.billing:
        billing.add_row(b.company_id, str(b.phone_index), b.category, b.pricing_model, str(b.conversations),
                        str(b.billable_messages), str(b.messages))
    console.print(billing if report.billing else "no Cloud API messages with pricing data in the period")
    statuses = Table("company", "phone", "engine", "direction", "status", "messages",
                     title="Messages per status (by when created)")
    for s in report.statuses:
        statuses.add_row(s.company_id, str(s.phone_index), s.provider, s.direction, s.status, str(s.messages))
    console.print(statuses if report.statuses else "no messages in the period")
