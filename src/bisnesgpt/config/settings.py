"""``Settings``: every field group joined into the one object each entry point builds."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsConfigDict

from bisnesgpt.config.edge import EdgeSettings
from bisnesgpt.config.engines import EngineSettings
from bisnesgpt.config.processes import ProcessSettings
from bisnesgpt.config.types import Role
from bisnesgpt.core.errors import ConfigError


class Settings(ProcessSettings, EngineSettings, EdgeSettings):
    """Every knob of the product. Field ``foo_bar`` is environment variable ``FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    def instances_of(self, role: Role) -> int:
        """How many processes of ``role`` this deployment runs (0 when disabled)."""
        if not self.role_enabled(role):
            return 0
        return {"api": self.api_instances, "wwebjs": self.wwebjs_instances, "meta": self.meta_instances,
                "legacy": 1}[role]


_SECRET_FIELDS = ("key", "secret", "password", "token")


def _describe(error: ErrorDetails) -> str:
    loc = error.get("loc") or ("?",)
    field = str(loc[0])
    env_name = field.upper()
    given = error.get("input")
    secret = any(word in field for word in _SECRET_FIELDS)
    if field.endswith("_url") and isinstance(given, str):
        given = mask_url(given)
    shown = f"={given!r}" if isinstance(given, str | int | float) and not secret else ""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"invalid setting {env_name}{shown}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from env/.env (plus explicit overrides); raise ConfigError on bad input.

    The ConfigError message is one readable line naming the variable; entry points print it
    and exit with status 2.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_describe(first)) from exc


def mask_url(url: str | None) -> str:
    """A URL safe to log: the password (if any) replaced by ``***``."""
    if not url:
        return "-"
    parts = urlsplit(url)
    if "sentinel_password=" in parts.query:
        parts = parts._replace(query=re.sub(r"sentinel_password=[^&]*", "sentinel_password=***", parts.query))
    if parts.password is None:
        return parts.geturl()
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
