"""Spawning the product's real processes from tests, and waiting on them over HTTP."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

SERVICE_ENV_PREFIXES = ("DATABASE_", "REDIS_", "TEST_", "API_", "WWEBJS_", "META_", "ENABLE_", "PORT",
                        "PROCESS_NAME", "INSTANCE_ID", "BISNESGPT_")


# Below the kernel's ephemeral range (32768-60999 here): a port handed out by bind(0) can be taken
# by any outbound connection's local end before the spawned server binds it.
_PORT_RANGE = (20000, 32000)
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port that is free now, outside the ephemeral range, and not handed out before in this run."""
    while True:
        port = random.randint(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The test runner's environment minus anything that configures the product."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


# Every Proc spawned in this test session, in order: a failing test's report shows their logs.
SPAWNED: list[Proc] = []


class Proc:
    """A spawned ``python -m bisnesgpt …`` with its output in a file."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], log_name: str = "proc") -> None:
        SPAWNED.append(self)
        self.log_path = cwd / f"{log_name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bisnesgpt", *args], cwd=cwd, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.output().splitlines()[-lines:])
        except OSError as exc:
            return f"(log unreadable: {exc})"

    def wait_for_output(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            match = regex.search(self.output())
            if match:
                return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not seen in output:\n{self.output()[-4000:]}")

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            self._log.close()

    def kill_tree(self) -> None:
        """Last-resort cleanup for a test that failed midway."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for proc in [*children]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._log.close()


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def processes_under(path: Path) -> list[psutil.Process]:
    """Live processes whose command line or working directory is inside ``path``."""
    found = []
    needle = str(path)
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if needle in cmdline or (proc.info["cwd"] or "").startswith(needle):
                found.append(proc)
        except psutil.Error:
            continue
    return [p for p in found if p.pid != os.getpid()]


def terminate(proc: Proc, sig: int = signal.SIGINT, timeout: float = 30) -> int:
    proc.signal(sig)
    return proc.wait(timeout)
