"""``bisnesgpt secrets rotate``: every secret at rest re-encrypted with the current key, bound to its row.

Walks every encrypted column (``ENCRYPTED_TABLES``, checked against ``schema.sql`` by a test)
in batches by row key. A value that is not yet v2 under ``ENCRYPTION_KEY`` — a legacy
``ivHex:tagHex:cipherHex`` value, or one sealed with ``ENCRYPTION_KEY_PREVIOUS`` — is
decrypted and sealed again for its place; the update only applies when the stored value is
still the one read, so a write meanwhile (already sealed with the current key) is kept.

Each batch commits on its own, and which values are left is read from the values themselves
(their version and key id), so the command is idempotent — a second run changes nothing —
and resumable: an interrupted run continues where it stopped when started again. A value
that decrypts with neither key is counted as failed and left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bisnesgpt.core.crypto import SecretBox, SecretColumn
from bisnesgpt.core.errors import CryptoError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs.store import AUTH_STATE
from bisnesgpt.phones.store import D360_API_KEY, META_ACCESS_TOKEN
from bisnesgpt.webhooks.endpoints import CUSTOM_HEADERS, SIGNING_SECRET

SQL = load_queries("bisnesgpt.cli")
BATCH_SIZE = 200


@dataclass(frozen=True)
class EncryptedField:
    """One encrypted column: where its values are, what they are bound to, how one is replaced."""

    column: str  # the column holding the ciphertexts
    binding: SecretColumn  # the associated data its values are sealed with
    reseal_sql: str  # ($1 row key, $2 old value, $3 new value)


@dataclass(frozen=True)
class EncryptedTable:
    """A table with encrypted columns and the query that pages through it by row key."""

    table: str
    page_sql: str  # ($1 row key to start after, $2 limit) -> row_key text[], the columns
    fields: tuple[EncryptedField, ...]


ENCRYPTED_TABLES = (
    EncryptedTable("phone_configs", SQL.phone_secrets_after, (
        EncryptedField("meta_access_token_encrypted", META_ACCESS_TOKEN, SQL.reseal_phone_access_token),
        EncryptedField("api_key_encrypted", D360_API_KEY, SQL.reseal_phone_api_key),
    )),
    EncryptedTable("wwebjs_sessions", SQL.session_secrets_after, (
        EncryptedField("auth_state", AUTH_STATE, SQL.reseal_session_auth_state),
    )),
    EncryptedTable("webhook_endpoints", SQL.endpoint_secrets_after, (
        EncryptedField("secret_encrypted", SIGNING_SECRET, SQL.reseal_endpoint_secret),
        EncryptedField("previous_secret_encrypted", SIGNING_SECRET, SQL.reseal_endpoint_previous_secret),
        EncryptedField("headers_encrypted", CUSTOM_HEADERS, SQL.reseal_endpoint_headers),
    )),
)


@dataclass
class ColumnTally:
    """What a rotation found and did in one column."""

    checked: int = 0
    resealed: int = 0
    current: int = 0  # already v2 under the current key
    changed_meanwhile: int = 0  # written while we worked (so already current): left alone
    failed: list[str] = field(default_factory=list)  # places whose value neither key opens


@dataclass
class RotationReport:
    """Per ``table.column``, the tally of a rotation (``dry_run``: nothing was written)."""

    dry_run: bool
    columns: dict[str, ColumnTally] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """How many values could not be decrypted."""
        return sum(len(tally.failed) for tally in self.columns.values())

    @property
    def resealed(self) -> int:
        """How many values were (or, in a dry run, would be) re-encrypted."""
        return sum(tally.resealed for tally in self.columns.values())


Progress = Callable[[str, int, RotationReport], None]  # (table, rows seen in it so far, report)


def _no_progress(_table: str, _rows: int, _report: RotationReport) -> None:
    return None


async def rotate_secrets(db: Database, box: SecretBox, *, dry_run: bool = False, batch_size: int = BATCH_SIZE,
                         progress: Progress = _no_progress) -> RotationReport:
    """Re-encrypt every stored secret that is not v2 under ``box``'s current key (see module docstring)."""
    report = RotationReport(dry_run)
    for table in ENCRYPTED_TABLES:
        for spec in table.fields:
            report.columns[f"{table.table}.{spec.column}"] = ColumnTally()
        after: list[str] = [""]
        rows_seen = 0
        while True:
            async with db.transaction() as conn:
                rows = await conn.fetch(table.page_sql, after, batch_size)
                for row in rows:
                    row_key = [str(part) for part in row["row_key"]]
                    for spec in table.fields:
                        value = row[spec.column]
                        if value is None:
                            continue
                        tally = report.columns[f"{table.table}.{spec.column}"]
                        tally.checked += 1
                        place = spec.binding.at(*row_key)
                        try:
                            sealed = box.reseal(value, place)
                        except CryptoError:
                            tally.failed.append(str(place))
                            continue
                        if sealed is None:
                            tally.current += 1
                        elif dry_run or await conn.execute(spec.reseal_sql, row_key, value, sealed) == "UPDATE 1":
                            tally.resealed += 1
                        else:
                            tally.changed_meanwhile += 1
            if not rows:
                break
            rows_seen += len(rows)
            after = [str(part) for part in rows[-1]["row_key"]]
            progress(table.table, rows_seen, report)
            if len(rows) < batch_size:
                break
    return report
