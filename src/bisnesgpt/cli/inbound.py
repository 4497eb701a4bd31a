"""``bisnesgpt inbound unrouted``: the provider webhooks kept aside because they named no phone, or several.

Inbound routing never guesses: a Cloud API or 360dialog webhook whose identities (channel,
phone_number_id, display number) match no configured phone, or more than one, is kept in
``meta_webhook_changes`` under no company, with a warning event. This lists them for the
operator, who fixes the phone configuration (the provider may redeliver; the value is kept).
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from bisnesgpt.cli.common import command_group, console
from bisnesgpt.cli.database import run_with_database
from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.phones import UnroutedChange, unrouted_changes, unrouted_next_step

inbound_app = command_group(help="Provider webhooks as they arrived: those no phone could be found for.")


@inbound_app.command("unrouted")
def unrouted(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000, help="At most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line (with the value as received)"),
) -> None:
    """List webhooks kept aside: routing unmatched (no phone) or ambiguous (several, with the candidates)."""

    async def fetch(db: Database, _settings: Settings) -> list[UnroutedChange]:
        async with db.connection() as conn:
            return await unrouted_changes(conn, limit)

    rows = run_with_database(fetch)
    if as_json:
        for row in rows:
            typer.echo(json.dumps({
                "id": row.id, "provider": row.provider, "routing": row.routing, "field": row.field,
                "wabaId": row.waba_id, "phoneNumberId": row.phone_number_id, "candidates": row.candidates,
                "receivedAt": row.received_at.isoformat(), "value": row.value}, sort_keys=True))
        return
    table = Table("id", "received", "provider", "routing", "field", "waba", "phone_number_id", "candidates")
    for row in rows:
        candidates = ", ".join(f"{c['companyId']}/{c['phoneIndex']}" for c in row.candidates
                               if isinstance(c, dict)) if isinstance(row.candidates, list) else "-"
        table.add_row(str(row.id), row.received_at.isoformat(timespec="seconds"), row.provider, row.routing,
                      row.field, row.waba_id or "-", row.phone_number_id or "-", candidates or "-")
    console.print(table)
    # What to do, one unwrapped line per change (the dashboard's Queues page says the same).
    for row in rows:
        typer.echo(f"{row.id}: {unrouted_next_step(row)}")
