"""Running ``bisnesgpt demo`` (what ``make demo`` runs) from tests, and shell commands against it.

``DemoRun`` starts the demo in a directory of its own on free ports (API, engines, both
sandboxes) with nothing configured — the embedded default, as in a fresh clone — and a
``.venv`` link there to this interpreter's environment, so ``.venv/bin/bisnesgpt`` works in
that directory as after ``make venv``. ``banner()`` waits for the ready banner;
``try_commands()`` are the commands it prints; ``shell(script)`` runs bash there with the
environment a user's second terminal has (``WWEBJS_SANDBOX_URL`` naming the demo's
network); ``localize(text)`` turns the README's default ports into this run's.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import Proc, clean_env, free_port

BANNER_END = "=" * 78


@dataclass
class DemoPorts:
    """The ports of one demo run; the README's defaults are 3000-3002, 4010 and 3010."""

    api: int = field(default_factory=free_port)
    wwebjs: int = field(default_factory=free_port)
    meta: int = field(default_factory=free_port)
    emulator: int = field(default_factory=free_port)
    network: int = field(default_factory=free_port)


class DemoRun:
    """One ``bisnesgpt demo`` in ``workdir`` (see the module docstring)."""

    def __init__(self, workdir: Path, ports: DemoPorts | None = None, name: str = "demo") -> None:
        self.workdir = workdir
        self.ports = ports or DemoPorts()
        self.name = name
        self.proc: Proc | None = None
        venv = workdir / ".venv"
        if not venv.exists():
            venv.symlink_to(Path(sys.prefix), target_is_directory=True)

    @property
    def env(self) -> dict[str, str]:
        """The demo's environment: its ports, nothing else configured."""
        return clean_env(API_PORT=str(self.ports.api), WWEBJS_PORT=str(self.ports.wwebjs),
                         META_PORT=str(self.ports.meta), HOST="127.0.0.1", HEARTBEAT_INTERVAL="2000",
                         WWEBJS_SANDBOX_URL=f"http://127.0.0.1:{self.ports.network}", COLUMNS="200")

    def start(self) -> DemoRun:
        """Start the demo (its output in ``<name>.log``)."""
        self.proc = Proc(["demo", "--emulator-port", str(self.ports.emulator)], cwd=self.workdir, env=self.env,
                         log_name=self.name)
        return self

    @property
    def output(self) -> str:
        """Everything the demo printed so far."""
        assert self.proc is not None
        return self.proc.output()

    def banner(self, timeout: float = 180) -> str:
        """The ready banner, once printed (its framed lines)."""
        assert self.proc is not None
        match = self.proc.wait_for_output(r"(?s)bisnesgpt demo is ready.*?\n" + BANNER_END, timeout=timeout)
        return match.group(0)

    def try_commands(self, banner: str) -> list[str]:
        """The commands of the banner's "Try it" list."""
        return [line.strip() for line in banner.split("Try it", 1)[1].splitlines() if line.strip().startswith("curl ")]

    @property
    def key(self) -> str:
        """The demo key the banner shows (``data/demo-api-key``)."""
        return (self.workdir / "data" / "demo-api-key").read_text().strip()

    def localize(self, text: str) -> str:
        """The README's default ports replaced by this run's (the only change made to its commands)."""
        for default, port in (("localhost:3000", self.ports.api), ("localhost:4010", self.ports.emulator),
                              ("127.0.0.1:3010", self.ports.network)):
            text = text.replace(default, f"{default.split(':')[0]}:{port}")
        return text

    def shell(self, script: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``bash -euo pipefail`` running ``script`` in the demo's directory, as a second terminal would."""
        env = clean_env(WWEBJS_SANDBOX_URL=f"http://127.0.0.1:{self.ports.network}", COLUMNS="200")
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.workdir, env=env, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 90) -> int:
        """Ctrl-C (or ``sig``) and wait; the exit status."""
        assert self.proc is not None
        self.proc.signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Last-resort cleanup."""
        if self.proc is not None:
            self.proc.kill_tree()

    def helper_pid(self, name: str) -> int | None:
        """The pid of the newest ``spawned <name> (pid N)`` line."""
        found = re.findall(rf"spawned {re.escape(name)} \(pid (\d+)\)", self.output)
        return int(found[-1]) if found else None
