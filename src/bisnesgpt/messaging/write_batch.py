"""Group commit: the writes of many send jobs in one transaction (``WriteBatcher``).

A job hands its write (a function of a connection) to ``run`` and awaits the commit of the
batch that holds it, so it is completed only once its outcome is durably stored. A batch is
flushed when it holds ``max_items`` writes, or ``max_delay_ms`` after its first one; one
flush is in flight at a time, and writes arriving meanwhile form the next batch (under load
batches grow by themselves, idle a write waits at most ``max_delay_ms``).

Within a batch the writes run in order of their key (the chat) and, for one key, in the order
they were handed over: per-chat order holds, and two processes' batches lock chats in the
same order (no deadlock between them). One commit (one WAL flush) and one pool acquisition
serve the whole batch.

Set-based writes: a write handed over with a ``BatchWrite`` (and its item) may run together
with the other writes of the batch handed with the same ``BatchWrite``: one call for all of
them, with their items in key order, answering one result per item (a statement over arrays
instead of one statement per write). The batch runs in rounds: round n holds the n-th write
of each key, so a key's writes still run one after the other in hand-over order, and in a
round each ``BatchWrite`` is called once, for items of distinct keys (then the other writes of
the round, one by one, in key order). A key's later writes come in a later round, so a batch
with several writes of one key may lock that key after other keys handed later (a deadlock
between two such batches is an error like any other: see below). The write handed with the
item is what runs when the batch is run one by one, alone in its transaction: it must do
what the ``BatchWrite`` does for that item.

Failures: when PostgreSQL is unavailable every write of the batch fails with it (each job
retries as it would have alone). Any other error rolls the batch back and its writes are run
again one transaction each, so only the write that fails on its own fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.db.pool import Database

log = logging.getLogger(__name__)
T = TypeVar("T")
ItemT = TypeVar("ItemT")
Write = Callable[[asyncpg.Connection], Awaitable[T]]
# The writes of many items in one go: one result per item, in the items' order.
BatchWrite = Callable[[asyncpg.Connection, list[ItemT]], Awaitable[list[T]]]


@dataclass(frozen=True)
class _Pending:
    key: str
    write: Write[Any]
    done: asyncio.Future[Any]
    together: BatchWrite[Any, Any] | None = None
    item: object = None


class WriteBatcher:
    """Runs handed-over writes in shared transactions (see module docstring)."""

    def __init__(self, db: Database, *, max_items: int = 64, max_delay_ms: float = 2.0) -> None:
        self.db = db
        self.max_items = max_items
        self.max_delay_s = max_delay_ms / 1000
        self._pending: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.batches = 0  # committed batches (and writes in them): what the batcher saved
        self.writes = 0

    async def run(self, key: str, write: Write[T], *, together: BatchWrite[ItemT, T] | None = None,
                  item: ItemT | None = None) -> T:
        """Run ``write`` in the next batch; its result once that batch has committed.

        With ``together`` (and ``item``), the write may run as ``together``'s call for ``item``
        with the batch's other items of it (see module docstring).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Pending(key, write, done, together, item))
        if len(self._pending) >= self.max_items:
            self._flush_soon()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay_s, self._flush_soon)
        # Shielded: a job cancelled while waiting leaves its write in the batch, whose other
        # writes must not be disturbed.
        return await asyncio.shield(done)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None and self._pending:
            batch, self._pending = self._pending[:self.max_items], self._pending[self.max_items:]
            self._flushing = asyncio.create_task(self._flush(batch))

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            await self._commit(batch)
        except BaseException as exc:  # cancelled mid-flush: no job may wait for ever
            failure = exc if isinstance(exc, Exception) else DatabaseUnavailable("write batch cancelled")
            for pending in batch:
                _settle(pending, exc=failure)
            raise
        finally:
            self._flushing = None
            if self._pending:  # they waited for this flush: their batch goes now
                self._flush_soon()

    async def _commit(self, batch: list[_Pending]) -> None:
        ordered = sorted(batch, key=lambda pending: pending.key)  # stable: hand-over order within a key
        try:
            async with self.db.transaction() as conn:
                results = await _run_rounds(conn, ordered)
        except DatabaseUnavailable as exc:
            for pending in ordered:
                _settle(pending, exc=exc)
            return
        except Exception as exc:  # one write's error must not fail the others
            log.warning("a batch of %d writes failed (%s); running them one by one", len(ordered), exc)
            await self._one_by_one(ordered)
            return
        self.batches += 1
        self.writes += len(ordered)
        for pending, result in zip(ordered, results, strict=True):
            _settle(pending, result=result)

    async def _one_by_one(self, ordered: list[_Pending]) -> None:
        for pending in ordered:
            try:
                async with self.db.transaction() as conn:
                    result = await pending.write(conn)
            except Exception as exc:  # handed to the job that owns the write
                _settle(pending, exc=exc)
            else:
                _settle(pending, result=result)

    async def close(self) -> None:
        """Flush what is pending and wait for it (a stopping worker's last outcomes)."""
        while self._pending or self._flushing is not None:
            self._flush_soon()
            if self._flushing is not None:
                await asyncio.shield(self._flushing)


async def _run_rounds(conn: asyncpg.Connection, ordered: list[_Pending]) -> list[object]:
    """Each write's result, run in rounds (see module docstring); ``ordered`` is in key order."""
    rounds: list[list[int]] = []
    writes_of_key: dict[str, int] = {}
    for index, pending in enumerate(ordered):
        nth = writes_of_key.get(pending.key, 0)
        writes_of_key[pending.key] = nth + 1
        if nth == len(rounds):
            rounds.append([])
        rounds[nth].append(index)
    results: list[object] = [None] * len(ordered)
    for indexes in rounds:
        groups: dict[BatchWrite[Any, Any], list[int]] = {}
        alone: list[int] = []
        for index in indexes:
            together = ordered[index].together
            if together is None:
                alone.append(index)
            else:
                groups.setdefault(together, []).append(index)
        for together, members in groups.items():
            answers = await together(conn, [ordered[index].item for index in members])
            if len(answers) != len(members):
                raise RuntimeError(f"{together!r} answered {len(answers)} results for {len(members)} items")
            for index, answer in zip(members, answers, strict=True):
                results[index] = answer
        for index in alone:
            results[index] = await ordered[index].write(conn)
    return results


def _settle(pending: _Pending, *, result: object = None, exc: BaseException | None = None) -> None:
    if pending.done.done():
        return
    if exc is not None:
        pending.done.set_exception(exc)
    else:
        pending.done.set_result(result)
