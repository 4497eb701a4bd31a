"""``bisnesgpt audit``: who changed what through the API or the dashboard, newest first."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from bisnesgpt.api.audit import AuditEntry, entries
from bisnesgpt.cli.common import console
from bisnesgpt.cli.database import run_with_database
from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database


def audit(
    company_id: str | None = typer.Argument(None, help="Only what this company's keys did or was done to it"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000, help="At most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line"),
) -> None:
    """List the audit log: every change an operator or a company key made (sends are their messages)."""

    async def fetch(db: Database, _settings: Settings) -> list[AuditEntry]:
        return await entries(db, viewer_company=None, company=company_id, before=None, limit=limit)

    rows = run_with_database(fetch)
    if as_json:
        for row in rows:
            typer.echo(json.dumps({
                "id": row.id, "at": row.at.isoformat() if row.at else None, "actor": row.actor_kind,
                "actorCompanyId": row.actor_company_id, "keyId": row.key_id, "via": row.via,
                "clientAddress": row.client_address, "method": row.method, "route": row.route, "path": row.path,
                "companyId": row.target_company_id, "status": row.status}, sort_keys=True))
        return
    table = Table("id", "at", "who", "key", "via", "from", "request", "company", "status")
    for row in rows:
        who = "operator" if row.actor_kind == "admin" else f"company {row.actor_company_id}"
        table.add_row(str(row.id), row.at.isoformat(timespec="seconds") if row.at else "-", who,
                      str(row.key_id) if row.key_id is not None else "-", row.via, row.client_address or "-",
                      f"{row.method} {row.path}", row.target_company_id or "-", str(row.status))
    console.print(table)
