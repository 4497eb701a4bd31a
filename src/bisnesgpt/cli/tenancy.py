"""``bisnesgpt companies add|list|quota|antiban|disable|enable`` and ``bisnesgpt keys create|list|revoke``.

API keys are stored as SHA-256 only: ``keys create`` prints the key once and never again.
A company key may be limited to scopes (``--scope``) and phones (``--phone``); any key may
expire (``--expires``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import cast

import typer
from rich.table import Table

from bisnesgpt.cli import antiban
from bisnesgpt.cli.common import COMPANY_HELP, command_group, console, err_console, one_company
from bisnesgpt.cli.database import announce, run_with_database
from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.antiban_settings import AntiBanOverrides
from bisnesgpt.tenancy import store
from bisnesgpt.tenancy.store import SCOPES, ApiKey, Company, CompanyStatus, KeyLimits, Scope, SendQuota

companies_app = command_group(help="Companies (tenants).")
keys_app = command_group(help="API keys: company keys and operator (admin) keys.")

SCOPE_OPTION = typer.Option(None, "--scope", "-s", help=f"Only this scope (repeat for more): {', '.join(SCOPES)}; "
                                                         "default: every scope")
PHONE_OPTION = typer.Option(None, "--phone", "-p", min=0,
                            help="Only this phone index (repeat for more); default: every phone")
_IN = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_expiry(value: str) -> datetime:
    """``--expires``: a time from now such as ``90d``, ``12h``, ``30m``, or an ISO 8601 time (naive = UTC)."""
    match = _IN.match(value.strip())
    if match:
        return datetime.now(UTC) + timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use a duration such as 90d, 12h, 30m, or an ISO 8601 time "
                                 "(2026-12-31T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_scopes(values: list[str] | None) -> tuple[Scope, ...] | None:
    """``--scope`` (repeated, or comma-separated); None when not given (every scope)."""
    if not values:
        return None
    scopes = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise typer.BadParameter(f"unknown scope {', '.join(unknown) or '(none)'}; the scopes are {', '.join(SCOPES)}")
    return tuple(cast(Scope, scope) for scope in scopes)


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else "-"


@companies_app.command("add")
def companies_add(
    company_id: str = typer.Argument(..., help="Id used in API paths (1-64 of A-Z a-z 0-9 _ . -)"),
    name: str = typer.Option("", "--name", "-n", help="Display name (default: the id)"),
) -> None:
    """Create a company."""

    async def add(db: Database, _settings: Settings) -> Company:
        async with db.connection() as conn:
            return await store.create_company(conn, company_id, name or company_id)

    company = run_with_database(add)
    console.print(f"company {company.id} ({company.name}) created")


@companies_app.command("list")
def companies_list() -> None:
    """List companies."""

    async def fetch(db: Database, _settings: Settings) -> list[Company]:
        async with db.connection() as conn:
            return await store.list_companies(conn)

    table = Table("id", "name", "status", "created")
    for company in run_with_database(fetch):
        table.add_row(company.id, company.name, company.status, _when(company.created_at))
    console.print(table)


@companies_app.command("quota")
def companies_quota(
    company_id: str = typer.Argument(..., help="The company"),
    per_minute: int | None = typer.Option(None, "--per-minute", min=0, help="Sends allowed per minute (0: no quota)"),
    per_day: int | None = typer.Option(None, "--per-day", min=0, help="Sends allowed per day (0: no quota)"),
) -> None:
    """Show or set a company's send quotas (a send over one is answered 429 and not stored)."""

    async def apply(db: Database, _settings: Settings) -> SendQuota:
        async with db.connection() as conn:
            await store.get_company(conn, company_id)
            current = await store.send_quota(conn, company_id)
            if per_minute is None and per_day is None:
                return current
            minute = current.per_minute if per_minute is None else (per_minute or None)
            day = current.per_day if per_day is None else (per_day or None)
            return await store.set_send_quota(conn, company_id, per_minute=minute, per_day=day)

    quota = run_with_database(apply)
    console.print(f"company {company_id} send quota: {quota.describe()}")


@companies_app.command("antiban")
@antiban.with_antiban_options
def companies_antiban(company_id: str = typer.Argument(..., help="The company"), *,
                      controls: dict[str, object]) -> None:
    """Show or set a company's anti-ban defaults (for its WhatsApp-Web phones that set none of their own)."""

    async def apply(db: Database, _settings: Settings) -> AntiBanOverrides:
        async with db.connection() as conn:
            await store.get_company(conn, company_id)
        return await antiban.change_antiban(db, company_id, None, controls)

    console.print(f"company {company_id} anti-ban defaults: {antiban.describe(run_with_database(apply))}")


def _set_status(company_id: str, status: CompanyStatus) -> None:
    async def apply(db: Database, settings: Settings) -> Company:
        async with db.connection() as conn:
            company = await store.set_company_status(conn, company_id, status)
        await _announce_key_change(settings, db.dsn, {"companyId": company_id, "origin": "cli"})
        return company

    company = run_with_database(apply)
    console.print(f"company {company.id} is {company.status}")


@companies_app.command("disable")
def companies_disable(company_id: str = typer.Argument(..., help="The company")) -> None:
    """Disable a company: its keys (and dashboard sign-ins) are refused until it is enabled again."""
    _set_status(company_id, "disabled")


@companies_app.command("enable")
def companies_enable(company_id: str = typer.Argument(..., help="The company")) -> None:
    """Enable a disabled company again."""
    _set_status(company_id, "active")


@keys_app.command("create")
def keys_create(
    company_id: str | None = typer.Argument(None, help=f"{COMPANY_HELP}: the key's company (omit with --admin)"),
    admin: bool = typer.Option(False, "--admin", help="An operator key: reaches every company"),
    name: str = typer.Option("", "--name", "-n", help="A label to recognise the key by"),
    scope: list[str] | None = SCOPE_OPTION,
    phone: list[int] | None = PHONE_OPTION,
    expires: str | None = typer.Option(None, "--expires", help="Expiry: 90d, 12h, 30m or an ISO 8601 time"),
) -> None:
    """Create an API key and print it (it is shown only this once)."""
    if admin == (company_id is not None):
        err_console.print("bisnesgpt: give a company id, or --admin for an operator key (not both)")
        raise typer.Exit(2)
    if admin and (scope or phone):
        err_console.print("bisnesgpt: operator keys reach everything: --scope and --phone are for company keys")
        raise typer.Exit(2)
    limits = KeyLimits(parse_scopes(scope), tuple(phone) if phone else None,
                       parse_expiry(expires) if expires is not None else None)

    async def create(db: Database, _settings: Settings) -> tuple[ApiKey, str]:
        async with db.connection() as conn:
            if company_id is not None:
                await store.get_company(conn, company_id)
            return await store.create_api_key(conn, company_id=company_id, name=name, limits=limits)

    record, plaintext = run_with_database(create)
    reach = "operator (all companies)" if admin else f"company {company_id}"
    err_console.print(f"key {record.id} for {reach} ({_limits(record)}) created; store it now, it is not shown "
                      "again:", markup=False)
    print(plaintext)


def _limits(key: ApiKey) -> str:
    scopes = ", ".join(key.scopes) if key.scopes is not None else "every scope"
    phones = ("phones " + ", ".join(map(str, key.phone_indexes))) if key.phone_indexes is not None else "every phone"
    expiry = f"expires {_when(key.expires_at)}" if key.expires_at is not None else "no expiry"
    return f"{scopes}; {phones}; {expiry}"


@keys_app.command("list")
def keys_list(
    company: str | None = typer.Argument(None, help="Only this company's keys"),
    company_option: str | None = typer.Option(None, "--company", "-c", hidden=True),
) -> None:
    """List API keys (prefix only; keys themselves are not stored)."""
    company_id = one_company(company, company_option, required=False)

    async def fetch(db: Database, _settings: Settings) -> list[ApiKey]:
        async with db.connection() as conn:
            if company_id is not None:
                await store.get_company(conn, company_id)  # an unknown company is an error, not an empty list
            return await store.list_api_keys(conn, company_id)

    table = Table("id", "company", "role", "name", "prefix", "scopes", "phones", "expires", "created", "last used",
                  "revoked")
    for key in run_with_database(fetch):
        table.add_row(str(key.id), key.company_id or "*", key.role, key.name, key.key_prefix + "…",
                      " ".join(key.scopes) if key.scopes is not None else "all",
                      " ".join(map(str, key.phone_indexes)) if key.phone_indexes is not None else "all",
                      _when(key.expires_at), _when(key.created_at), _when(key.last_used_at), _when(key.revoked_at))
    console.print(table)


@keys_app.command("set")
def keys_set(
    key_id: int = typer.Argument(..., help="The key's id (see `keys list`)"),
    scope: list[str] | None = SCOPE_OPTION,
    phone: list[int] | None = PHONE_OPTION,
    expires: str | None = typer.Option(None, "--expires", help="Expiry: 90d, 12h, 30m or an ISO 8601 time"),
) -> None:
    """Replace an API key's limits (an option left out: no limit of that kind); they hold at once."""
    limits = KeyLimits(parse_scopes(scope), tuple(phone) if phone else None,
                       parse_expiry(expires) if expires is not None else None)

    async def change(db: Database, settings: Settings) -> ApiKey:
        async with db.connection() as conn:
            changed = await store.set_api_key_limits(conn, key_id, limits)
        await _announce_key_change(settings, db.dsn, {"keyId": key_id, "origin": "cli"})
        return changed

    console.print(f"key {key_id}: {_limits(run_with_database(change))}", markup=False)


@keys_app.command("revoke")
def keys_revoke(key_id: int = typer.Argument(..., help="The key's id (see `keys list`)")) -> None:
    """Revoke an API key: it stops working at once."""

    async def revoke(db: Database, settings: Settings) -> None:
        async with db.connection() as conn:
            await store.revoke_api_key(conn, key_id)
        await _announce_key_change(settings, db.dsn, {"keyId": key_id, "origin": "cli"})

    run_with_database(revoke)
    console.print(f"key {key_id} revoked")


async def _announce_key_change(settings: Settings, database_url: str, what: dict[str, object]) -> None:
    """Tell the running processes to forget the keys they cached (best effort; else API_KEY_CACHE_SECONDS)."""
    from bisnesgpt.coordination.channels import API_KEYS_CHANGED, publish

    delivered = await announce(settings, database_url,
                               lambda client, namespace: publish(client, API_KEYS_CHANGED, what, namespace=namespace))
    if not delivered:
        err_console.print(f"note: Redis not reachable; running APIs see the change within "
                          f"API_KEY_CACHE_SECONDS ({settings.api_key_cache_seconds:g} s)")
