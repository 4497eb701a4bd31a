"""A warning that fires per refused request is logged at most once per interval, with its count."""

from __future__ import annotations

import logging

import pytest

from bisnesgpt.api.problems import error_response
from bisnesgpt.core.errors import Overloaded
from bisnesgpt.core.logging import SummarizedWarning
from tests.support.clock import ManualClock

pytestmark = pytest.mark.unit


def test_one_line_per_interval_with_the_count_since_the_last(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    warn = SummarizedWarning(logging.getLogger("t.summary"), 10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.summary"):
        warn("refused")  # the first is logged at once
        for _ in range(999):
            clock.now += 0.005
            warn("refused")
        clock.now = 1010.0  # ten seconds after the first line
        warn("refused again")
    assert [r.getMessage() for r in caplog.records] == [
        "refused", "refused again (1000 times since the last such line)"]


def test_overload_refusals_do_not_log_a_line_each(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bisnesgpt.api.problems"):
        answers = [error_response(Overloaded("busy; retry after the Retry-After seconds")) for _ in range(100)]
    assert {a.status_code for a in answers} == {503}
    assert all(a.headers["retry-after"] == "1" for a in answers)
    assert len(caplog.records) <= 1
