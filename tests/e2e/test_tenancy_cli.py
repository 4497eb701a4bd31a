"""``bisnesgpt companies|keys|phones`` as an operator runs them, against a running API."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.store import touch_inbound_session
from bisnesgpt.phones.store import META_ACCESS_TOKEN
from tests.support.pipeline import ENCRYPTION_KEY, ApiServer
from tests.support.polling import eventually
from tests.support.procs import clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def cli(tmp_path: Path, database_url: str, redis_url: str, *args: str, stdin: str | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    environment = clean_env(DATABASE_URL=database_url, REDIS_URL=redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
                            DATA_DIR=str(tmp_path / "data"), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "bisnesgpt", *args], cwd=tmp_path, env=environment, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_operators_manage_companies_keys_and_phones(tmp_path: Path, db: Database, database_url: str,
                                                          redis_url: str) -> None:
    def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return cli(tmp_path, database_url, redis_url, *args, stdin=stdin, **env)

    added = run("companies", "add", "acme", "--name", "Acme Sdn Bhd")
    assert added.returncode == 0, added.stderr
    duplicate = run("companies", "add", "acme")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    assert run("companies", "add", "bad id!").returncode == 1
    listed = run("companies", "list")
    assert "acme" in listed.stdout and "Acme Sdn Bhd" in listed.stdout

    created = run("keys", "create", "acme", "--name", "crm")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("bgpt_") and "not shown again" in created.stderr
    operator = run("keys", "create", "--admin").stdout.strip().splitlines()[-1]
    assert run("keys", "create").returncode == 2
    assert run("keys", "create", "nobody").returncode == 1
    keys = run("keys", "list", "--company", "acme").stdout
    assert key[:14] in keys and key not in keys
    stored = await db.fetchval("SELECT key_hash FROM api_keys WHERE company_id = 'acme'")
    assert key not in stored

    token = "EAAG-cli-secret-token-0123456789"
    phone = run("phones", "add", "acme", "--index", "1", "--type", "meta_direct", "--phone-number-id", "555001",
                "--waba-id", "777", "--access-token", "-", "--no-verify", stdin=token + "\n")
    assert phone.returncode == 0, phone.stderr
    assert "meta-messages" in phone.stdout and token not in phone.stdout + phone.stderr
    assert run("phones", "add", "acme", "--index", "1").returncode == 1  # exists: use `set`
    assert run("phones", "add", "acme", "--index", "2", "--type", "360dialog").returncode == 2  # ids missing
    assert run("phones", "add", "acme", "--index", "0").returncode == 0
    encrypted = await db.fetchval("SELECT meta_access_token_encrypted FROM phone_configs "
                                  "WHERE company_id = 'acme' AND phone_index = 1")
    assert SecretBox.from_hex(ENCRYPTION_KEY).decrypt(encrypted, META_ACCESS_TOKEN.at("acme", 1)) == token
    phones = run("phones", "list", "acme").stdout
    assert "meta_direct" in phones and "set" in phones and token not in phones

    api = ApiServer(tmp_path / "api", database_url, redis_url, ROUTER_CACHE_TTL="300")
    try:
        await api.start()
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as client:
            send = "/api/v2/messages/text/acme/60123456789"
            async with db.connection() as conn:  # the contact wrote: Meta's 24-hour window is open
                await touch_inbound_session(conn, "acme", 1, "60123456789", datetime.now(UTC))
            first = await client.post(send, json={"message": "x", "phoneIndex": 1})
            assert first.json()["queueName"] == "meta-messages"
            admin = await client.get("/api/whatsapp/meta-accounts", headers={"Authorization": f"Bearer {operator}"})
            assert admin.status_code == 200 and [a["phone_index"] for a in admin.json()] == [1]

            # A change made with the CLI reroutes the running API (pub/sub), not just after the TTL.
            changed_at = time.monotonic()
            assert run("phones", "set", "acme", "1", "--type", "wwebjs").returncode == 0

            async def rerouted() -> bool:
                response = await client.post(send, json={"message": "x", "phoneIndex": 1})
                return bool(response.json()["queueName"] == "wwebjs-messages")

            await eventually(rerouted, timeout=10, what="reroute after `phones set`")
            print(f"\nrerouted {time.monotonic() - changed_at:.2f} s after `phones set` started (incl. CLI start-up)")
            assert run("phones", "remove", "acme", "1").returncode == 0
            assert run("phones", "remove", "acme", "1").returncode == 1

            async def gone() -> bool:
                return (await client.post(send, json={"message": "x", "phoneIndex": 1})).status_code == 404

            await eventually(gone, timeout=10, what="404 after `phones remove`")

            key_id = next(line.split()[1] for line in run("keys", "list").stdout.splitlines()
                          if key[:14] in line)
            assert run("keys", "revoke", key_id).returncode == 0
            revoked = await client.get("/api/whatsapp/config/acme")
            assert revoked.status_code == 401
    finally:
        api.stop()


async def test_commands_on_an_unmigrated_database_say_what_to_do(tmp_path: Path, empty_database_url: str,
                                                                 redis_url: str) -> None:
    result = cli(tmp_path, empty_database_url, redis_url, "companies", "list")
    assert result.returncode == 1
    assert "bisnesgpt migrate" in result.stderr


async def test_every_command_names_the_company_the_same_way_and_an_unknown_one_fails(
        tmp_path: Path, db: Database, database_url: str, redis_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(tmp_path, database_url, redis_url, *args)

    assert run("companies", "add", "acme").returncode == 0
    created = run("keys", "create", "acme")
    key = created.stdout.strip().splitlines()[-1]
    # COMPANY is an argument everywhere (the earlier --company still works where it existed).
    assert key[:14] in run("keys", "list", "acme").stdout
    assert key[:14] in run("keys", "list", "-c", "acme").stdout
    assert run("phones", "add", "acme", "--index", "0").returncode == 0
    assert "acme" in run("phones", "list", "acme").stdout
    hook = run("webhooks", "create", "acme", "--url", "https://example.com/hook")
    assert hook.returncode == 0, hook.stderr
    assert "example.com" in run("webhooks", "list", "acme").stdout
    assert run("webhooks", "list", "--company", "acme").returncode == 0
    # An unknown company is an error that says so, never an empty table.
    for args in (("keys", "list", "nosuch"), ("phones", "list", "nosuch"), ("webhooks", "list", "nosuch"),
                 ("keys", "create", "nosuch")):
        result = run(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "company 'nosuch' not found" in result.stderr, (args, result.stderr)
    assert run("webhooks", "create", "--url", "https://example.com/x").returncode == 2


def test_help_pages_show_no_value_for_flags(tmp_path: Path) -> None:
    for args in ((), ("keys",), ("keys", "create"), ("phones", "list"), ("webhooks", "create"), ("sandbox", "wweb")):
        result = subprocess.run([sys.executable, "-m", "bisnesgpt", *args, "--help"], env=clean_env(COLUMNS="120"),
                                cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, (args, result.stderr)
        assert "--help" in result.stdout and "<bool>" not in result.stdout, (args, result.stdout)
