"""py-spy profiles of the product's processes while a measured load runs (``--profile``).

``Profiles(directory, pids)`` starts one ``py-spy record`` per named process (raw collapsed
stacks, 100 samples/s, idle frames left out, the process not paused) and stops them on exit;
``top`` turns one file into the functions with the most samples: *self* (the frame on top of
the stack: where the CPU goes), *inclusive* (the frame anywhere on the stack: what a call
costs with everything below it) and *product inclusive* (the same for the product's own
functions only). py-spy is not a dependency:
``.venv/bin/pip install py-spy`` to profile (without it ``--profile`` is refused).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

RATE = 100


def _py_spy() -> str | None:
    # The venv's own (next to the interpreter) first: the venv need not be on PATH.
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def available() -> bool:
    """Whether py-spy can be run."""
    return _py_spy() is not None


class Profiles:
    """``py-spy record`` on each named pid for the duration of the ``with`` block."""

    def __init__(self, directory: Path | None, pids: dict[str, int], label: str) -> None:
        self.directory = directory
        self.pids = pids
        self.label = label
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files: dict[str, Path] = {}

    def __enter__(self) -> Profiles:
        if self.directory is None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            path = self.directory / f"{self.label}-{name}.txt"
            self.files[name] = path
            self.procs[name] = subprocess.Popen(
                [_py_spy() or "py-spy", "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
                 "--nonblocking", "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def summary(self, n: int = 15) -> dict[str, Any]:
        """Per process: samples and the top ``n`` self and inclusive frames (share of samples, %)."""
        return {name: top(path, n) for name, path in self.files.items() if path.exists()}


def _frame(raw: str) -> str:
    # "function (path/to/module.py:123)" → "function (module.py)": lines vary, modules do not.
    name, _, where = raw.partition(" (")
    module = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({module})" if module else name


def top(path: Path, n: int = 15) -> dict[str, Any]:
    """The functions with most samples in one raw py-spy file (see the module docstring)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    product: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = stack.split(";")
        frames = [_frame(f) for f in raw]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
        for frame in {_frame(f) for f in raw if _is_product(f)}:
            product[frame] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[frame, round(100 * c / total, 1)] for frame, c in counter.most_common(n)] if total else []

    return {"samples": total, "self_pct": share(own), "inclusive_pct": share(anywhere),
            "product_inclusive_pct": share(product)}


def _is_product(raw: str) -> bool:
    # The product's own functions, less the role's start-up frames every sample shares.
    startup = ("/cli/", "runtime.py", "__main__.py")
    return ("(bisnesgpt/" in raw or "/bisnesgpt/" in raw) and not any(part in raw for part in startup)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(top(Path(arg), 25), indent=1))
