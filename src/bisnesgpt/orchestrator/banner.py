"""What ``bisnesgpt start`` prints once everything is ready: where to go, where the logs are, how to stop.

Plain text on stdout (not a log line), framed so it stands out of the children's output;
the same lines are what ``bisnesgpt demo`` adds its own to.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bisnesgpt.config import Settings
from bisnesgpt.orchestrator.children import child_specs

RULE = "=" * 78


def public_host(host: str) -> str:
    """The host to put in a URL for a server listening on ``host`` (all interfaces: localhost)."""
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def api_url(settings: Settings) -> str:
    """The base URL of the API on this machine, e.g. ``http://localhost:3000``."""
    return f"http://{public_host(settings.host)}:{settings.api_port}"


def cli_name() -> str:
    """How to run ``bisnesgpt`` from here: the bare name when it is on PATH, else the script of
    this interpreter's environment (``.venv/bin/bisnesgpt`` after ``make start``)."""
    script = Path(sys.executable).parent / "bisnesgpt"
    if not script.exists() or shutil.which("bisnesgpt") == str(script):
        return "bisnesgpt"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def ready_lines(settings: Settings, *, pid: int | None = None) -> list[str]:
    """The banner's lines for a running system: what runs, its URLs, the logs, how to stop."""
    api = api_url(settings)
    names = ", ".join(spec.name for spec in child_specs(settings))
    disabled = [role for role in ("wwebjs", "meta") if not settings.role_enabled(role)]
    ports = ", ".join(f"{role} {settings.http_port_for(role)}" for role in ("api", "wwebjs", "meta")
                      if settings.role_enabled(role))
    logs = settings.log_dir.resolve()
    return [
        f"bisnesgpt is ready: {names}" + (f" (disabled: {', '.join(disabled)})" if disabled else ""),
        f"  API         {api}/api  (send: POST {api}/api/v2/messages/text/<company>/<number>)",
        f"  API docs    {api}/docs",
        f"  dashboard   {api}/dashboard  (sign in with an API key: {cli_name()} keys create --admin)",
        f"  health      {api}/health/all  (every process; /health on each port: {ports})",
        f"  logs        {logs}/<role>-out.log and <role>-error.log",
        f"  stop        Ctrl-C here (or: kill -TERM {pid or os.getpid()})",
    ]


def frame(lines: Sequence[str]) -> str:
    """``lines`` between two rules, with a blank line around them."""
    return "\n".join(["", RULE, *lines, RULE, ""])


def print_banner(lines: Sequence[str]) -> None:
    """Print the framed banner to stdout at once."""
    sys.stdout.write(frame(lines) + "\n")
    sys.stdout.flush()
