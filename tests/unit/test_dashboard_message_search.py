"""The messages list's text search: a term matches anywhere, its own wildcards taken literally."""

from __future__ import annotations

import pytest

from bisnesgpt.dashboard.messages import like_pattern

pytestmark = pytest.mark.unit


def test_a_term_matches_anywhere_and_its_wildcards_are_literal() -> None:
    assert like_pattern("status: bad") == "%status: bad%"
    assert like_pattern("50%_off") == "%50\\%\\_off%"
    assert like_pattern("a\\b") == "%a\\\\b%"
