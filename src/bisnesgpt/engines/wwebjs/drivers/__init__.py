"""Driver implementations: ``neonize`` (WhatsApp's network) and ``sandbox`` (the sandbox network)."""

from __future__ import annotations

from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.driver import WebDriver
from bisnesgpt.engines.wwebjs.media import MediaFetcher


def build_driver(settings: Settings, db: Database, database_url: str, *, process_name: str,
                 holder: str) -> WebDriver:
    """The driver WWEBJS_DRIVER names, constructed (opened later, inside the running process)."""
    media = MediaFetcher(settings.wwebjs_media_max_bytes, settings.wwebjs_media_timeout_seconds,
                         allow_private=settings.wwebjs_media_allow_private_urls)
    if settings.wwebjs_driver == "sandbox":
        from bisnesgpt.engines.wwebjs.drivers.sandbox import SandboxDriver

        return SandboxDriver(settings.wwebjs_sandbox_url, process_name=process_name, holder=holder, media=media)
    from bisnesgpt.engines.wwebjs.drivers.neonize import NeonizeDriver

    return NeonizeDriver(db, database_url, schema=settings.wwebjs_store_schema,
                         sslmode=settings.wwebjs_store_sslmode, media=media)
