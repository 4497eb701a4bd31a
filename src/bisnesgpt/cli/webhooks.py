"""``bisnesgpt webhooks …``: tenant webhook endpoints, delivery log, retry and replay (operator).

Talks to the database directly (like ``migrate``), with operator scope: every company.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import typer
from rich.table import Table

from bisnesgpt.cli.common import COMPANY_HELP, cli_errors, command_group, console, one_company, settings_or_exit
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.tenancy import store as tenancy
from bisnesgpt.webhooks.deliveries import DeliveryStatus
from bisnesgpt.webhooks.service import DeliveryView, EndpointView, WebhookService, delivery_view, endpoint_view

T = TypeVar("T")

webhooks_app = command_group(help="Tenant webhook endpoints: list, create, deliveries, retry, replay.")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
REPLAY_BATCH = 1000


def parse_since(value: str) -> datetime:
    """ISO 8601 (naive = UTC) or a relative age such as ``90m``, ``2h``, ``1d``."""
    match = _RELATIVE.match(value.strip())
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"--since {value!r}: use ISO 8601 (2025-01-01T00:00:00Z) or an age like 2h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run(action: Callable[[WebhookService], Awaitable[T]]) -> T:
    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.db.pool import Database
    from bisnesgpt.infra.secrets import resolve_encryption_key, secret_box
    from bisnesgpt.infra.services import ensure_services

    settings = settings_or_exit()
    setup_logging("webhooks", "WARNING", settings.log_format)

    async def _go(database_url: str) -> T:
        db = Database(database_url, max_size=2, min_size=0, application_name="bisnesgpt-cli-webhooks",
                      connect_timeout=settings.database_connect_timeout)
        await db.open()
        try:
            return await action(WebhookService(db, secret_box(resolved), resolved))
        finally:
            await db.close()

    with cli_errors():
        resolved = resolve_encryption_key(settings)
        services = ensure_services(resolved, need_redis=False)
        try:
            return asyncio.run(_go(services.database_url))
        finally:
            services.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use 'Name: value'", param_hint="--header")
        headers[name.strip()] = value.strip()
    return headers


@webhooks_app.command("list")
def list_endpoints(
    company_id: str | None = typer.Argument(None, help="Only this company's endpoints"),
    company_option: str | None = typer.Option(None, "--company", hidden=True),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List endpoints (all companies unless one is named)."""
    company = one_company(company_id, company_option, required=False)

    async def action(service: WebhookService) -> list[EndpointView]:
        if company is not None:
            async with service.db.connection() as conn:
                await tenancy.get_company(conn, company)  # an unknown company is an error, not an empty list
        return [endpoint_view(e, service.header_names(e)) for e in await service.list_endpoints(company)]

    views = _run(action)
    if as_json:
        _print_json(views)
        return
    table = Table("company", "url", "events", "enabled", "failing since", "notice")
    table.add_column("id", no_wrap=True)
    for view in views:
        table.add_row(view["company_id"], view["url"], "all" if view["all_events"] else ",".join(view["events"]),
                      "yes" if view["enabled"] else "NO", view["health"]["failing_since"] or "-",
                      (view["notice"] or "")[:60], view["id"])
    console.print(table)
    console.print(f"{len(views)} endpoint(s)")


@webhooks_app.command("show")
def show(endpoint_id: str) -> None:
    """One endpoint, with delivery counts by status."""

    async def action(service: WebhookService) -> EndpointView:
        endpoint = await service.get(endpoint_id, None)
        view = endpoint_view(endpoint, service.header_names(endpoint))
        view["deliveries"] = await service.counts(endpoint.id, None)
        return view

    _print_json(_run(action))


@webhooks_app.command("create")
def create(
    company_id: str | None = typer.Argument(None, help=COMPANY_HELP),
    company_option: str | None = typer.Option(None, "--company", hidden=True),
    url: str = typer.Option(..., "--url", help="http(s) URL receiving the events."),
    event: list[str] = typer.Option([], "--event", help="Event type to receive (repeat; none = all)."),  # noqa: B008
    header: list[str] = typer.Option([], "--header", help="Custom header 'Name: value' (repeat)."),  # noqa: B008
    description: str = typer.Option("", "--description"),
    include_raw: bool = typer.Option(False, "--include-raw", help="Add the provider payload as data.raw."),
    disabled: bool = typer.Option(False, "--disabled", help="Create it disabled."),
) -> None:
    """Create an endpoint; prints its signing secret once."""
    company = one_company(company_id, company_option, required=True)
    assert company is not None
    headers = _headers(header)

    async def action(service: WebhookService) -> EndpointView:
        created = await service.create(company, url=url, events=event, enabled=not disabled, headers=headers,
                                       description=description, include_raw=include_raw)
        view = endpoint_view(created.endpoint, service.header_names(created.endpoint))
        view["secret"] = created.secret
        return view

    view = _run(action)
    _print_json(view)
    console.print("[bold]Store the secret now: it is not shown again.[/bold]", highlight=False)


@webhooks_app.command("update")
def update(
    endpoint_id: str,
    url: str | None = typer.Option(None, "--url"),
    event: list[str] | None = typer.Option(None, "--event", help="Replace the event filter (repeat)."),  # noqa: B008
    all_events: bool = typer.Option(False, "--all-events", help="Receive every event type."),
    enable: bool | None = typer.Option(None, "--enable/--disable", help="Enable (resumes waiting deliveries)."),
    description: str | None = typer.Option(None, "--description"),
) -> None:
    """Change an endpoint."""
    events = [] if all_events else (event or None)

    async def action(service: WebhookService) -> EndpointView:
        record = await service.update(endpoint_id, None, url=url, events=events, enabled=enable,
                                      description=description)
        return endpoint_view(record, service.header_names(record))

    _print_json(_run(action))


@webhooks_app.command("delete")
def delete(endpoint_id: str) -> None:
    """Delete an endpoint and its delivery log."""

    async def action(service: WebhookService) -> None:
        await service.delete(endpoint_id, None)

    _run(action)
    console.print(f"deleted {endpoint_id}")


@webhooks_app.command("rotate-secret")
def rotate_secret(
    endpoint_id: str,
    overlap: float | None = typer.Option(None, "--overlap", help="Seconds the old secret keeps signing."),
) -> None:
    """New signing secret (printed once); the old one signs too during the overlap."""

    async def action(service: WebhookService) -> EndpointView:
        created = await service.rotate_secret(endpoint_id, None, overlap)
        view = endpoint_view(created.endpoint, service.header_names(created.endpoint))
        view["secret"] = created.secret
        return view

    _print_json(_run(action))


@webhooks_app.command("deliveries")
def list_deliveries(
    endpoint_id: str,
    status: str | None = typer.Option(None, "--status", help="pending | retrying | delivered | dead"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Delivery log of an endpoint, newest first."""

    async def action(service: WebhookService) -> list[DeliveryView]:
        return [delivery_view(d) for d in await service.list_deliveries(endpoint_id, None, status=status,
                                                                         limit=limit)]

    views = _run(action)
    if as_json:
        _print_json(views)
        return
    table = Table("id", "type", "status", "attempts", "next attempt", "last", "last error")
    table.add_column("event", no_wrap=True)
    for v in views:
        table.add_row(str(v["id"]), v["event_type"], v["status"], str(v["attempts"]), v["next_attempt_at"] or "-",
                      str(v["last_status_code"] or "-"), (v["last_error"] or "")[:50], v["event_id"])
    console.print(table)


@webhooks_app.command("retry")
def retry(
    endpoint_id: str,
    delivery_ids: list[int] = typer.Argument(None, help="Deliveries to attempt again now."),  # noqa: B008
    all_dead: bool = typer.Option(False, "--all-dead", help="Every dead delivery of the endpoint."),
) -> None:
    """Attempt deliveries again now (same event ids)."""
    if not delivery_ids and not all_dead:
        raise typer.BadParameter("give delivery ids or --all-dead")

    async def action(service: WebhookService) -> int:
        count = 0
        if all_dead:
            count += await service.retry_dead(endpoint_id, None)
        for delivery_id in delivery_ids or []:
            await service.retry(endpoint_id, delivery_id, None)
            count += 1
        return count

    console.print(f"queued {_run(action)} delivery attempt(s)")


@webhooks_app.command("replay")
def replay(
    endpoint_id: str,
    since: str = typer.Option(..., "--since", help="ISO 8601 time or an age like 2h / 1d."),
    until: str | None = typer.Option(None, "--until", help="ISO 8601 time or an age (exclusive)."),
    event: list[str] | None = typer.Option(None, "--event", help="Only these event types (repeat)."),  # noqa: B008
) -> None:
    """Re-deliver the company's events since a time to this endpoint (same event ids)."""
    start = parse_since(since)
    end = parse_since(until) if until else None

    async def action(service: WebhookService) -> int:
        total = 0
        cursor, after = start, None
        while True:
            result = await service.replay(endpoint_id, None, since=cursor, until=end, events=event,
                                          limit=REPLAY_BATCH, after_event_id=after)
            total += result.replayed
            console.print(f"replayed {total} event(s) so far", highlight=False)
            if result.replayed < REPLAY_BATCH or result.last_created_at is None:
                return total
            cursor, after = result.last_created_at, result.last_event_id

    with cli_errors():
        total = _run(action)
    console.print(f"done: {total} event(s) queued for redelivery")


@webhooks_app.command("stats")
def stats(endpoint_id: str) -> None:
    """Delivery counts by status for one endpoint."""

    async def action(service: WebhookService) -> dict[DeliveryStatus, int]:
        return await service.counts(endpoint_id, None)

    _print_json(_run(action))
