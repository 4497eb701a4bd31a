"""No module of ``bisnesgpt`` grows past 450 lines: past that a module does more than one job.

A module that reaches the limit is split by job (as ``config/``, ``engines/wwebjs/`` and
``dashboard/`` were), not given an exception here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bisnesgpt

pytestmark = pytest.mark.unit

SRC = Path(bisnesgpt.__file__).parent
MAX_LINES = 450


def test_no_module_is_over_the_limit() -> None:
    sizes = {path.relative_to(SRC.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in SRC.rglob("*.py")}
    assert len(sizes) > 100  # the package was found
    over = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert over == {}, f"split these modules by job (at most {MAX_LINES} lines each): {over}"
