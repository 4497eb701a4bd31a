"""``bisnesgpt demo`` (``make demo``): the whole system with both sandboxes, ready to send.

``bisnesgpt start`` on the embedded default, plus, supervised by the same orchestrator as
its helpers (started with it, restarted when they crash, stopped by the same Ctrl-C): the
Cloud API emulator (``bisnesgpt sandbox meta``, playing Meta, with the demo's number) and
the WhatsApp-Web sandbox network (``bisnesgpt sandbox wweb serve``, playing WhatsApp). The
roles are pointed at them (``META_GRAPH_URL``, ``WWEBJS_DRIVER=sandbox``,
``WWEBJS_SANDBOX_URL``, ``WWEBJS_MEDIA_ALLOW_PRIVATE_URLS``, …) through their environment
only. The demo's company, key and phones are ``demo_world``'s.

A demo never touches configured servers: ``DATABASE_URL``/``REDIS_URL`` are ignored (with a
note), everything lives in ``DATA_DIR`` (``./data``), and a second run reuses it.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import typer

from bisnesgpt.cli import demo_world as world
from bisnesgpt.cli.common import cli_errors, err_console, settings_or_exit
from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.orchestrator.helpers import HelperSpec
from bisnesgpt.orchestrator.lock import OrchestratorRunning
from bisnesgpt.orchestrator.supervisor import Extras, run_orchestrator

EMULATOR = "sandbox-meta"
NETWORK = "sandbox-wweb"


def demo(
    emulator_port: int = typer.Option(4010, "--emulator-port", help="Port of the Cloud API emulator"),
) -> None:
    """Run everything with both sandboxes, a demo company, key and paired phones (Ctrl-C stops it).

    The WhatsApp-Web sandbox serves on the port of WWEBJS_SANDBOX_URL (3010), so the
    `bisnesgpt sandbox wweb …` commands reach it as they are.
    """
    configured = settings_or_exit()
    if configured.database_url or configured.effective_redis_url:
        err_console.print("bisnesgpt demo: DATABASE_URL/REDIS_URL are ignored: the demo runs on its own embedded "
                          f"servers in {configured.data_dir}")
    settings = configured.model_copy(update={"database_url": None, "redis_url": None, "redis_host": None})
    with cli_errors():
        try:
            status = run_orchestrator(settings, prepare=lambda resolved, services: prepare(
                resolved, services.database_url, emulator_port))
        except OrchestratorRunning as exc:
            typer.echo(f"bisnesgpt: {exc.detail}", err=True)
            raise typer.Exit(1) from None
    raise typer.Exit(status)


def local_host(host: str) -> str:
    """How this machine reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "localhost") else host


def prepare(settings: Settings, database_url: str, emulator_port: int) -> Extras:
    """Seed the demo's world; the sandboxes as helpers, the roles' settings for them, the readiness step."""
    network_port = urlsplit(settings.wwebjs_sandbox_url).port or 3010
    urls = world.SandboxUrls(emulator=f"http://127.0.0.1:{emulator_port}", network=f"http://127.0.0.1:{network_port}")
    key = asyncio.run(_seed(database_url, settings))
    meta_webhook = f"http://{local_host(settings.host)}:{settings.meta_port}/webhook/meta"
    helpers = (
        HelperSpec(EMULATOR, ("sandbox", "meta", "--port", str(emulator_port),
                              "--phone", f"{world.PHONE_NUMBER_ID}:{world.ACCESS_TOKEN}",
                              "--waba-id", world.WABA_ID,
                              "--webhook-url", meta_webhook, "--app-secret", world.APP_SECRET), emulator_port),
        HelperSpec(NETWORK, ("sandbox", "wweb", "serve", "--port", str(network_port)), network_port),
    )
    env = {
        "META_GRAPH_URL": urls.emulator,
        "D360_BASE_URL": urls.emulator,
        "META_APP_SECRET": world.APP_SECRET,
        "META_WEBHOOK_VERIFY_TOKEN": world.VERIFY_TOKEN,
        "WWEBJS_DRIVER": "sandbox",
        "WWEBJS_SANDBOX_URL": urls.network,
        # The sandbox serves its sample media (and tenants' webhooks go) on this machine.
        "WWEBJS_MEDIA_ALLOW_PRIVATE_URLS": "true",
        "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS": "true",
        # The network starts beside the engine: reconnect within seconds, not minutes.
        "WWEBJS_RECONNECT_MAX_MS": "5000",
    }
    readiness = world.DemoReadiness(settings, database_url, key, urls)
    return Extras(helpers=helpers, env=env, on_ready=readiness.start)


async def _seed(database_url: str, settings: Settings) -> str:
    db = Database(database_url, min_size=0, max_size=2, application_name="bisnesgpt-demo")
    await db.open()
    try:
        return await world.seed(db, settings)
    finally:
        await db.close()
