"""``bisnesgpt secrets rotate``: re-encrypt every secret at rest with ENCRYPTION_KEY, bound to its row.

Used after changing the key (the old one in ENCRYPTION_KEY_PREVIOUS) and once after upgrading,
to turn values in the original ``ivHex:tagHex:cipherHex`` format into row-bound v2 values.
"""

from __future__ import annotations

import typer
from rich.table import Table

from bisnesgpt.cli.common import command_group, console, err_console
from bisnesgpt.cli.database import run_with_database
from bisnesgpt.cli.secret_rotation import BATCH_SIZE, RotationReport, rotate_secrets
from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.secrets import resolve_encryption_key, secret_box

secrets_app = command_group(help="Secrets at rest: re-encrypt them with the current key.")


@secrets_app.command("rotate")
def secrets_rotate(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be re-encrypted; write nothing"),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", min=1, max=10_000, help="Rows per transaction"),
) -> None:
    """Re-encrypt every stored secret not yet sealed with ENCRYPTION_KEY for its row (safe to re-run)."""

    def progress(table: str, rows: int, _report: RotationReport) -> None:
        err_console.print(f"{table}: {rows} rows checked")

    async def rotate(db: Database, settings: Settings) -> RotationReport:
        box = secret_box(resolve_encryption_key(settings))
        err_console.print(f"current key {box.key_id}" + (" (dry run: nothing is written)" if dry_run else ""))
        return await rotate_secrets(db, box, dry_run=dry_run, batch_size=batch_size, progress=progress)

    report = run_with_database(rotate)
    table = Table("column", "checked", "would re-encrypt" if dry_run else "re-encrypted", "already current",
                  "changed meanwhile", "failed")
    for column, tally in report.columns.items():
        table.add_row(column, str(tally.checked), str(tally.resealed), str(tally.current),
                      str(tally.changed_meanwhile), str(len(tally.failed)))
    console.print(table)
    for column, tally in report.columns.items():
        for place in tally.failed:
            err_console.print(f"bisnesgpt: {column}: cannot decrypt {place} with ENCRYPTION_KEY or "
                              "ENCRYPTION_KEY_PREVIOUS (left as it is)", markup=False)
    if report.failed:
        raise typer.Exit(1)
