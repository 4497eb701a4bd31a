"""How many sessions each wwebjs process should drive: a capacity-aware fair share.

Every live process (``wwebjs_members``) computes the same shares from the same rows, so no
coordinator is needed: a process below its share claims unowned sessions (at most its start
batch per tick), one above its share hands sessions over, at most ``WWEBJS_HANDOFF_BATCH``
per tick, and the processes below their share take them. Shares depend only on who is a
member, their capacities and how many sessions are wanted — never on who holds what — and
a remainder always goes to the same members (holder order), so a balanced fleet has nothing
to move and cannot flap; sessions move only when membership, capacity or demand changes.

Shares follow capacity: with limits ``WWEBJS_MAX_SESSIONS`` (``None`` = no limit) the
sessions are spread in proportion to what each can take, never above it; a draining process
has capacity 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """One live wwebjs process as the others see it."""

    holder: str
    capacity: int | None  # None: no limit
    sessions: int = 0
    draining: bool = False

    @property
    def room(self) -> int | None:
        """The most sessions it may drive now (0 while draining, None for no limit)."""
        return 0 if self.draining else self.capacity


@dataclass(frozen=True)
class Share:
    """What one process should do this tick."""

    target: int  # sessions it should drive
    claim: int  # unowned sessions it may take now
    hand_off: int  # sessions it should give up now


def shares(members: Sequence[Member], total: int) -> dict[str, int]:
    """Each member's share of ``total`` sessions, by capacity (largest remainder, ties by holder).

    Members without a limit split what the limited ones cannot take; a fleet whose capacity is
    smaller than ``total`` gives each member its full capacity (the rest wait unowned).
    """
    live = sorted(members, key=lambda m: m.holder)
    share = dict.fromkeys((m.holder for m in live), 0)
    remaining = total
    unlimited = [m for m in live if m.room is None]
    limited = [m for m in live if m.room is not None and m.room > 0]
    # Equal split first, capped by each limited member's room; repeat with what is left over.
    open_members = [*limited, *unlimited]
    while remaining > 0 and open_members:
        each = remaining / len(open_members)
        room_left = {m.holder: (math.inf if m.room is None else m.room - share[m.holder]) for m in open_members}
        capped = [m for m in open_members if room_left[m.holder] <= each]
        if capped:
            for m in capped:
                give = int(room_left[m.holder])
                share[m.holder] += give
                remaining -= give
            open_members = [m for m in open_members if m not in capped]
            continue
        base = math.floor(each)
        for m in open_members:
            share[m.holder] += base
        remaining -= base * len(open_members)
        for m in open_members[:remaining]:  # the remainder, one each, in holder order
            share[m.holder] += 1
        remaining = 0
    return share


def plan(members: Sequence[Member], me: str, *, total: int, mine: int, start_batch: int, handoff_batch: int) -> Share:
    """This process's target, how many unowned sessions to claim and how many to hand over."""
    target = shares(members, total).get(me, 0)
    return Share(target=target, claim=max(0, min(start_batch, target - mine)),
                 hand_off=max(0, min(handoff_batch, mine - target)))
