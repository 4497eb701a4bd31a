"""Secrets at rest are bound to their row; key rotation re-encrypts every one of them.

Before, every ciphertext was sealed without associated data: whoever could write to the
database (a bad migration, an SQL injection elsewhere, a restored backup mixed up) could copy
one company's Meta access token, 360dialog key, webhook secret or WhatsApp session into
another company's row, and the product used it there as if it were that company's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import bisnesgpt.db
from bisnesgpt.cli.secret_rotation import ENCRYPTED_TABLES, RotationReport, rotate_secrets
from bisnesgpt.config import load_settings
from bisnesgpt.core.crypto import SecretBox, SecretPlace
from bisnesgpt.core.errors import CryptoError
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.profiles import credentials_for_phone
from bisnesgpt.engines.wwebjs.driver import SessionKey
from bisnesgpt.engines.wwebjs.store import AuthStore
from bisnesgpt.phones import store as phones
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.webhooks.endpoints import SIGNING_SECRET
from bisnesgpt.webhooks.service import WebhookService
from tests.support.procs import clean_env

pytestmark = pytest.mark.security

OLD_KEY = "11" * 32
NEW_KEY = "22" * 32
SETTINGS = load_settings(_env_file=None, encryption_key=OLD_KEY, webhook_allow_private_destinations=True)


def legacy(key_hex: str, plaintext: str) -> str:
    """A value in the original Node format (16-byte IV, no associated data), as rows hold it today."""
    iv = os.urandom(16)
    sealed = AESGCM(bytes.fromhex(key_hex)).encrypt(iv, plaintext.encode(), None)
    return f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"


async def seed_companies(db: Database) -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ('acme', 'Acme'), ('rival', 'Rival')")


async def test_a_phone_credential_copied_to_another_companys_phone_does_not_decrypt(db: Database) -> None:
    await seed_companies(db)
    box = SecretBox.from_hex(OLD_KEY)
    service = PhoneConfigService(db, box, claims=None)
    await service.connect_meta("acme", 0, phone_number_id="1001", waba_id="w1", access_token="EAAG-acme-token")
    await service.connect_meta("rival", 0, phone_number_id="2002", waba_id="w2", access_token="EAAG-rival-token")
    await service.onboard_360dialog("acme", 1, client_id="c", channel_id="ch-acme", api_key="d360-acme-key")
    await service.onboard_360dialog("rival", 1, client_id="c", channel_id="ch-rival", api_key="d360-rival-key")
    await db.execute("""UPDATE phone_configs r SET meta_access_token_encrypted = a.meta_access_token_encrypted,
                               api_key_encrypted = a.api_key_encrypted
                        FROM phone_configs a
                        WHERE a.company_id = 'acme' AND r.company_id = 'rival' AND a.phone_index = r.phone_index""")
    async with db.connection() as conn:
        own = [await phones.get_phone(conn, "acme", i) for i in (0, 1)]
        copied = [await phones.get_phone(conn, "rival", i) for i in (0, 1)]
    assert [credentials_for_phone(SETTINGS, box, p).secret for p in own if p] == ["EAAG-acme-token", "d360-acme-key"]
    for phone in copied:
        assert phone is not None
        with pytest.raises(CryptoError, match="wrong row"):
            credentials_for_phone(SETTINGS, box, phone)


async def test_webhook_secrets_and_headers_copied_to_another_endpoint_do_not_decrypt(db: Database) -> None:
    await seed_companies(db)
    service = WebhookService(db, SecretBox.from_hex(OLD_KEY), SETTINGS)
    acme = await service.create("acme", url="http://127.0.0.1:9/a", headers={"Authorization": "Bearer acme"})
    rival = await service.create("rival", url="http://127.0.0.1:9/r", headers={"X-Rival": "1"})
    await db.execute("""UPDATE webhook_endpoints r SET secret_encrypted = a.secret_encrypted,
                               headers_encrypted = a.headers_encrypted
                        FROM webhook_endpoints a WHERE a.id = $1 AND r.id = $2""",
                     acme.endpoint.id, rival.endpoint.id)
    moved = await service.get(rival.endpoint.id, "rival")
    assert service.header_names(await service.get(acme.endpoint.id, "acme")) == ["Authorization"]
    with pytest.raises(CryptoError):
        service.header_names(moved)
    with pytest.raises(CryptoError):
        service.box.decrypt(moved.secret_encrypted, SIGNING_SECRET.at(moved.id))


async def test_a_whatsapp_session_copied_to_another_phone_does_not_decrypt(db: Database) -> None:
    await seed_companies(db)
    await db.execute("INSERT INTO phone_configs (company_id, phone_index) VALUES ('acme', 0), ('rival', 0)")
    auth = AuthStore(SecretBox.from_hex(OLD_KEY), "sandbox")
    async with db.transaction() as conn:
        await auth.save(conn, SessionKey("acme", 0), {"secret": "acme-device"}, device_id="d1", phone_number="601")
        await auth.save(conn, SessionKey("rival", 0), {"secret": "rival-device"}, device_id="d2", phone_number="602")
        await conn.execute("UPDATE wwebjs_sessions SET auth_state = (SELECT auth_state FROM wwebjs_sessions "
                           "WHERE company_id = 'acme') WHERE company_id = 'rival'")
        assert await auth.load(conn, SessionKey("acme", 0)) == {"secret": "acme-device"}
        with pytest.raises(CryptoError):
            await auth.load(conn, SessionKey("rival", 0))


async def seed_every_kind_of_secret(db: Database) -> dict[str, str]:
    """Legacy (no AAD) and old-key v2 values in every encrypted column; their plaintexts by place."""
    await seed_companies(db)
    old = SecretBox.from_hex(OLD_KEY)
    service = WebhookService(db, old, SETTINGS)
    endpoint = await service.create("acme", url="http://127.0.0.1:9/a", headers={"X-Auth": "h"})
    await service.rotate_secret(endpoint.endpoint.id, "acme", overlap_seconds=3600)  # previous_secret set
    for company, index in (("acme", 0), ("acme", 1), ("rival", 0)):
        await db.execute("""INSERT INTO phone_configs (company_id, phone_index, meta_access_token_encrypted,
                                                        api_key_encrypted) VALUES ($1, $2, $3, $4)""",
                         company, index, legacy(OLD_KEY, f"token-{company}-{index}"),
                         old.encrypt(f"key-{company}-{index}", SecretPlace("phone_configs", (company, str(index)),
                                                                            "api_key_encrypted")))
        await db.execute("INSERT INTO wwebjs_sessions (company_id, phone_index, auth_state) VALUES ($1, $2, $3)",
                         company, index, legacy(OLD_KEY, f'{{"who":"{company}-{index}"}}'))
    return await plaintexts(db, SecretBox.from_hex(NEW_KEY, OLD_KEY))


async def plaintexts(db: Database, box: SecretBox) -> dict[str, str]:
    """Every stored secret decrypted for its own place (raises when one does not open)."""
    found: dict[str, str] = {}
    async with db.connection() as conn:
        for table in ENCRYPTED_TABLES:
            for row in await conn.fetch(table.page_sql, [""], 10_000):
                for spec in table.fields:
                    if row[spec.column] is not None:
                        place = spec.binding.at(*row["row_key"])
                        found[f"{place}:{spec.column}"] = box.decrypt(row[spec.column], place)
    return found


async def stored_values(db: Database) -> list[str]:
    rows = await db.fetch("""SELECT meta_access_token_encrypted AS v FROM phone_configs
                             UNION ALL SELECT api_key_encrypted FROM phone_configs
                             UNION ALL SELECT auth_state FROM wwebjs_sessions
                             UNION ALL SELECT secret_encrypted FROM webhook_endpoints
                             UNION ALL SELECT previous_secret_encrypted FROM webhook_endpoints
                             UNION ALL SELECT headers_encrypted FROM webhook_endpoints""")
    return [r["v"] for r in rows if r["v"] is not None]


async def test_rotate_moves_every_secret_to_the_new_key_bound_to_its_row_and_is_idempotent(db: Database) -> None:
    before = await seed_every_kind_of_secret(db)
    assert len(before) == 3 * 3 + 3  # three phones (token, key, session), one endpoint (secret, previous, headers)
    rotated = SecretBox.from_hex(NEW_KEY, OLD_KEY)
    report = await rotate_secrets(db, rotated, batch_size=2)
    assert report.failed == 0 and report.resealed == len(before)
    # Only the new key is needed now: the old one can be removed from the settings.
    assert await plaintexts(db, SecretBox.from_hex(NEW_KEY)) == before
    assert all(value.startswith("v2:") for value in await stored_values(db))
    again = await rotate_secrets(db, rotated)
    assert again.resealed == 0 and sum(t.current for t in again.columns.values()) == len(before)


async def test_an_interrupted_rotation_continues_where_it_stopped(db: Database) -> None:
    before = await seed_every_kind_of_secret(db)
    rotated = SecretBox.from_hex(NEW_KEY, OLD_KEY)

    def interrupt(table: str, _rows: int, _report: RotationReport) -> None:
        if table == "phone_configs":
            raise KeyboardInterrupt  # the operator pressed Ctrl-C after the first batch

    with pytest.raises(KeyboardInterrupt):
        await rotate_secrets(db, rotated, batch_size=1, progress=interrupt)
    # The first batch (one phone: its token and its key) was committed before the interruption.
    assert sum(rotated.is_current(value) for value in await stored_values(db)) == 2
    resumed = await rotate_secrets(db, rotated, batch_size=1)
    assert resumed.failed == 0 and resumed.resealed == len(before) - 2
    assert await plaintexts(db, SecretBox.from_hex(NEW_KEY)) == before


async def test_rotate_reports_what_it_cannot_open_and_leaves_it(db: Database) -> None:
    await seed_every_kind_of_secret(db)
    await db.execute("UPDATE phone_configs SET api_key_encrypted = (SELECT api_key_encrypted FROM phone_configs "
                     "WHERE company_id = 'acme' AND phone_index = 0) WHERE company_id = 'rival'")
    report = await rotate_secrets(db, SecretBox.from_hex(NEW_KEY, OLD_KEY))
    assert report.columns["phone_configs.api_key_encrypted"].failed == ["phone_configs[rival/0].api_key_encrypted"]
    assert report.failed == 1


def test_rotation_knows_every_encrypted_column_of_the_schema() -> None:
    schema = (Path(bisnesgpt.db.__file__).parent / "schema.sql").read_text()
    encrypted = {f"{table}.{column}" for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", schema, re.S)
                 for column in re.findall(r"^\s+(\w+_encrypted|auth_state)\s", body, re.M)}
    covered = {f"{t.table}.{f.column}" for t in ENCRYPTED_TABLES for f in t.fields}
    assert encrypted == covered


def secrets_cli(tmp_path: Path, database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = clean_env(DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "data"), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "bisnesgpt", "secrets", *args], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def counts(stdout: str) -> dict[str, list[int]]:
    """The command's table: per column, its numbers (checked, re-encrypted, current, changed, failed)."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines() if "│" in line]
    return {row[0]: [int(cell) for cell in row[1:]] for row in rows if row and row[1].isdigit()}


async def test_the_rotate_command_as_an_operator_runs_it(tmp_path: Path, db: Database, database_url: str) -> None:
    before = await seed_every_kind_of_secret(db)
    keys = {"ENCRYPTION_KEY": NEW_KEY, "ENCRYPTION_KEY_PREVIOUS": OLD_KEY}
    dry = secrets_cli(tmp_path, database_url, "rotate", "--dry-run", **keys)
    assert dry.returncode == 0, dry.stderr
    assert "would re-encrypt" in dry.stdout and not any(SecretBox.from_hex(NEW_KEY).is_current(v)
                                                         for v in await stored_values(db))
    done = secrets_cli(tmp_path, database_url, "rotate", "--batch-size", "2", **keys)
    assert done.returncode == 0, done.stderr
    assert "phone_configs: 2 rows checked" in done.stderr and "phone_configs: 3 rows checked" in done.stderr
    assert counts(done.stdout)["phone_configs.meta_access_token_encrypted"] == [3, 3, 0, 0, 0]
    assert counts(done.stdout)["webhook_endpoints.previous_secret_encrypted"] == [1, 1, 0, 0, 0]
    assert await plaintexts(db, SecretBox.from_hex(NEW_KEY)) == before
    again = secrets_cli(tmp_path, database_url, "rotate", "--batch-size", "2", **keys)
    assert again.returncode == 0
    assert sorted(map(tuple, counts(again.stdout).values())) == [(1, 0, 1, 0, 0)] * 3 + [(3, 0, 3, 0, 0)] * 3
    # Without the previous key nothing old is left to need it; a wrong key is named, exit 1.
    assert secrets_cli(tmp_path, database_url, "rotate", ENCRYPTION_KEY=NEW_KEY).returncode == 0
    wrong = secrets_cli(tmp_path, database_url, "rotate", ENCRYPTION_KEY="33" * 32)
    assert wrong.returncode == 1 and "cannot decrypt phone_configs[acme/0].api_key_encrypted" in wrong.stderr
