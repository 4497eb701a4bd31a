"""``bisnesgpt sandbox …``: the shipped stand-ins for WhatsApp's servers (development, tests).

Each sandbox registers its own sub-command group here (one line each).
"""

from __future__ import annotations

from bisnesgpt.cli.common import command_group

sandbox_app = command_group(
    help="Local stand-ins for WhatsApp: the Cloud API emulator and the WhatsApp-Web sandbox.",
)

# Registration below the app: each sandbox module is imported only here.
from bisnesgpt.sandbox.meta_emulator.cli import meta_command  # noqa: E402
from bisnesgpt.sandbox.wweb.cli import wweb_app  # noqa: E402

sandbox_app.command("meta")(meta_command)
sandbox_app.add_typer(wweb_app, name="wweb")
