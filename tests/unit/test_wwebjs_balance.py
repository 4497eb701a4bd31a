"""Fair shares of the sessions over wwebjs processes (``engines.wwebjs.balance``)."""

from __future__ import annotations

import pytest

from bisnesgpt.engines.wwebjs.balance import Member, plan, shares

pytestmark = pytest.mark.unit


def test_equal_processes_split_evenly_and_the_remainder_goes_one_each() -> None:
    members = [Member("c", None), Member("a", None), Member("b", None)]
    assert shares(members, 10) == {"a": 4, "b": 3, "c": 3}
    assert sum(shares(members, 300).values()) == 300
    assert set(shares(members, 300).values()) == {100}


def test_shares_follow_capacity_and_never_exceed_it() -> None:
    members = [Member("small", 10), Member("big", 100), Member("any", None)]
    got = shares(members, 90)
    assert got == {"small": 10, "big": 40, "any": 40}
    # More sessions than the fleet can take: the limited ones are full, the unlimited takes the rest.
    assert shares([Member("a", 5), Member("b", 5)], 30) == {"a": 5, "b": 5}
    assert shares([Member("a", 5), Member("b", None)], 30) == {"a": 5, "b": 25}


def test_a_draining_process_gets_nothing_and_hands_everything_over() -> None:
    members = [Member("a", None, 6, draining=True), Member("b", None, 0)]
    assert shares(members, 6) == {"a": 0, "b": 6}
    assert plan(members, "a", total=6, mine=6, start_batch=3, handoff_batch=2).hand_off == 2
    assert plan(members, "b", total=6, mine=0, start_batch=3, handoff_batch=2).claim == 3


def test_a_joining_process_takes_its_share_gradually_and_a_balanced_fleet_stays_put() -> None:
    members = [Member("a", None), Member("b", None)]
    old = plan(members, "a", total=10, mine=10, start_batch=3, handoff_batch=2)
    assert (old.target, old.claim, old.hand_off) == (5, 0, 2)  # at most a batch per tick
    new = plan(members, "b", total=10, mine=0, start_batch=3, handoff_batch=2)
    assert (new.target, new.claim, new.hand_off) == (5, 3, 0)
    assert plan(members, "a", total=10, mine=6, start_batch=3, handoff_batch=2).hand_off == 1
    # An odd split: the remainder always goes to the same member, so nothing moves back and forth.
    assert plan(members, "a", total=11, mine=6, start_batch=3, handoff_batch=2) == plan(
        list(reversed(members)), "a", total=11, mine=6, start_batch=3, handoff_batch=2)
    assert plan(members, "a", total=11, mine=6, start_batch=3, handoff_batch=2).hand_off == 0
    assert plan(members, "b", total=11, mine=5, start_batch=3, handoff_batch=2).claim == 0


def test_alone_a_process_takes_everything_as_before() -> None:
    share = plan([Member("only", None)], "only", total=50, mine=0, start_batch=3, handoff_batch=2)
    assert (share.target, share.claim, share.hand_off) == (50, 3, 0)
