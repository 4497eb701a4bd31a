"""The anti-ban options of ``bisnesgpt phones set`` (a phone's own) and ``bisnesgpt companies antiban`` (defaults).

Each option sets one control; ``--inherit NAME`` (repeatable, or ``all``) clears it again, so
the company's default (for a phone) or the WWEBJS_* setting applies.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from bisnesgpt.cli.common import cli_errors
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs.antiban_settings import (
    CAP_ACTIONS,
    CONTROLS,
    AntiBanOverrides,
    company_overrides,
    load_overrides,
    save_overrides,
)

TYPING_OPTION = typer.Option(None, "--simulate-typing/--no-simulate-typing",
                             help='"typing…" before each text (anti-ban)')
JITTER_OPTION = typer.Option(None, "--jitter-ms", min=0, help="A random gap of up to this many ms between sends")
MESSAGE_CAP_OPTION = typer.Option(None, "--daily-message-cap", min=0, help="Messages per UTC day (0: no cap)")
NEW_CHAT_CAP_OPTION = typer.Option(None, "--daily-new-chat-cap", min=0,
                                   help="First messages to numbers that never wrote, per day (0: no cap)")
CAP_ACTION_OPTION = typer.Option(None, "--cap-action", help=f"Over a cap: {' | '.join(CAP_ACTIONS)}")
WARMUP_OPTION = typer.Option(None, "--warmup-days", min=0, help="A new number's caps grow over this many days")
CHECK_OPTION = typer.Option(None, "--check-on-whatsapp/--no-check-on-whatsapp",
                            help="Check a new number is on WhatsApp before the first message")
INHERIT_OPTION = typer.Option(None, "--inherit", help=f"Clear a control (repeat; or 'all'): {', '.join(CONTROLS)}")

# The options as a command's parameters: (name, type, typer option), in the order --help lists them.
_PARAMETERS: tuple[tuple[str, Any, Any], ...] = (
    ("simulate_typing", bool | None, TYPING_OPTION),
    ("jitter_ms", int | None, JITTER_OPTION),
    ("daily_message_cap", int | None, MESSAGE_CAP_OPTION),
    ("daily_new_chat_cap", int | None, NEW_CHAT_CAP_OPTION),
    ("cap_action", str | None, CAP_ACTION_OPTION),
    ("warmup_days", int | None, WARMUP_OPTION),
    ("check_on_whatsapp", bool | None, CHECK_OPTION),
    ("inherit", list[str] | None, INHERIT_OPTION),
)


def with_antiban_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a typer command the anti-ban options; it receives what they change as ``controls``.

    Typer reads a command's parameters from its signature, so the wrapper shows the command's
    own parameters (without ``controls``) followed by the options, and hands the command the
    checked changes (``antiban_changes``; a bad combination exits as a CLI error).
    """
    signature = inspect.signature(command)
    own = [parameter for parameter in signature.parameters.values() if parameter.name != "controls"]
    options = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
               for name, kind, option in _PARAMETERS]

    @functools.wraps(command)
    def with_controls(**given: Any) -> None:
        chosen = {name: given.pop(name) for name, _kind, _option in _PARAMETERS}
        with cli_errors():
            controls = antiban_changes(**chosen)
        command(**given, controls=controls)

    setattr(with_controls, "__signature__", signature.replace(parameters=own + options))  # noqa: B010
    annotations = {name: kind for name, kind in command.__annotations__.items() if name != "controls"}
    with_controls.__annotations__ = annotations | {name: kind for name, kind, _option in _PARAMETERS}
    return with_controls


def antiban_changes(*, simulate_typing: bool | None, jitter_ms: int | None, daily_message_cap: int | None,
                    daily_new_chat_cap: int | None, cap_action: str | None, warmup_days: int | None,
                    check_on_whatsapp: bool | None, inherit: list[str] | None) -> dict[str, object]:
    """The controls the options change (a cleared one as None); empty when none is given."""
    given: dict[str, object] = {"simulate_typing": simulate_typing, "send_jitter_ms": jitter_ms,
                                "daily_message_cap": daily_message_cap, "daily_new_chat_cap": daily_new_chat_cap,
                                "daily_cap_action": cap_action, "warmup_days": warmup_days,
                                "check_on_whatsapp": check_on_whatsapp}
    changes = {name: value for name, value in given.items() if value is not None}
    cleared = [name.strip().replace("-", "_") for value in inherit or () for name in value.split(",") if name.strip()]
    if "all" in cleared:
        cleared = list(CONTROLS)
    unknown = sorted(set(cleared) - set(CONTROLS))
    if unknown:
        raise ValidationFailed(f"--inherit {', '.join(unknown)}: not a control; the controls are {', '.join(CONTROLS)}")
    both = sorted(set(cleared) & set(changes))
    if both:
        raise ValidationFailed(f"{', '.join(both)} both set and inherited: give one")
    changes.update(dict.fromkeys(cleared))
    return changes


async def change_antiban(db: Database, company_id: str, phone_index: int | None,
                         changes: dict[str, object]) -> AntiBanOverrides:
    """Apply ``changes`` to a phone's controls (``phone_index``) or the company's defaults (None)."""
    async with db.transaction() as conn:
        if phone_index is None:
            current = (await company_overrides(conn, company_id)).get((company_id, None), AntiBanOverrides())
        else:
            current, _company = await load_overrides(conn, company_id, phone_index)
        changed = current.changed(changes)
        await save_overrides(conn, company_id, phone_index, changed)
    return changed


def describe(overrides: AntiBanOverrides) -> str:
    """The controls set, as ``name=value`` (or "none: every control inherits")."""
    shown = [f"{name}={value}" for name, value in overrides.as_json().items() if value is not None]
    return ", ".join(shown) if shown else "none (every control inherits)"
