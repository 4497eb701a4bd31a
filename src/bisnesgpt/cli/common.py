"""Helpers every command uses: settings loading and the error-to-exit-code boundary."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console

from bisnesgpt.api.problems import problem_for
from bisnesgpt.config import Settings, load_settings
from bisnesgpt.core.errors import BisnesgptError, ConfigError

console = Console()
err_console = Console(stderr=True)

EXIT_CONFIG = 2


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """ConfigError -> one line, exit 2; other product errors -> one line, exit 1."""
    try:
        yield
    except ConfigError as exc:
        print(f"bisnesgpt: {exc.detail}", file=sys.stderr)
        raise typer.Exit(EXIT_CONFIG) from None
    except BisnesgptError as exc:
        print(f"bisnesgpt: {problem_for(exc).title}: {exc.detail}", file=sys.stderr)
        raise typer.Exit(1) from None


def settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or the one-line error and exit status 2 when they are invalid."""
    with cli_errors():
        return load_settings(**overrides)
    raise AssertionError("unreachable")  # pragma: no cover
