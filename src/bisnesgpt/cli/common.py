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


def command_group(**options: Any) -> typer.Typer:
    """A ``typer.Typer`` as every bisnesgpt command group is made.

    Help is rendered the plain (click) way: typer's rich renderer prints a type column even
    for flags (``--help <bool>``), which reads as if the flag took a value.
    """
    return typer.Typer(rich_markup_mode=None, no_args_is_help=True, **options)


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


COMPANY_HELP = "The company's id"


def one_company(positional: str | None, option: str | None, *, required: bool) -> str | None:
    """The company a command names: its COMPANY argument (the hidden ``--company`` of earlier
    versions is still accepted); exit 2 when both differ or a required one is missing."""
    if positional is not None and option is not None and positional != option:
        err_console.print(f"bisnesgpt: two companies given ({positional!r} and --company {option!r}); give one")
        raise typer.Exit(EXIT_CONFIG)
    company = positional if positional is not None else option
    if required and company is None:
        err_console.print("bisnesgpt: name the company: COMPANY is required")
        raise typer.Exit(EXIT_CONFIG)
    return company

