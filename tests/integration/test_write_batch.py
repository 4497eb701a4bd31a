"""The group-commit writer against real PostgreSQL: flushes on size and on time, failures, per-key order."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bisnesgpt.core.errors import DatabaseUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.write_batch import WriteBatcher

pytestmark = pytest.mark.integration


async def _table(db: Database) -> None:
    await db.execute("CREATE TABLE batch_log (id bigserial PRIMARY KEY, key text NOT NULL, n int NOT NULL)")


def _logged(key: str, n: int, *, fail: BaseException | None = None):  # type: ignore[no-untyped-def]
    """A write that logs (key, n) and answers the id of its transaction."""
    async def write(conn: asyncpg.Connection) -> int:
        await conn.execute("INSERT INTO batch_log (key, n) VALUES ($1, $2)", key, n)
        if fail is not None:
            raise fail
        return int(await conn.fetchval("SELECT txid_current()"))
    return write


async def _rows(db: Database) -> list[tuple[str, int]]:
    return [(r["key"], r["n"]) for r in await db.fetch("SELECT key, n FROM batch_log ORDER BY id")]


async def test_a_full_batch_commits_at_once_in_one_transaction(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=5, max_delay_ms=600_000)  # the timer would never fire in the test
    txids = await asyncio.wait_for(asyncio.gather(*(batcher.run(f"k{n}", _logged(f"k{n}", n)) for n in range(5))), 30)
    assert len(set(txids)) == 1
    assert (batcher.batches, batcher.writes) == (1, 5)
    assert sorted(await _rows(db)) == [(f"k{n}", n) for n in range(5)]


async def test_a_partial_batch_commits_after_its_delay(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=1000, max_delay_ms=50)
    txids = await asyncio.wait_for(asyncio.gather(*(batcher.run("k", _logged("k", n)) for n in range(3))), 30)
    assert len(set(txids)) == 1 and batcher.batches == 1
    assert await _rows(db) == [("k", 0), ("k", 1), ("k", 2)]


async def test_nothing_is_answered_before_its_batch_flushes(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=1000, max_delay_ms=600_000)
    pending = asyncio.ensure_future(batcher.run("k", _logged("k", 1)))
    await asyncio.sleep(0.3)
    assert not pending.done() and await _rows(db) == []  # neither answered nor committed
    await batcher.close()  # a stopping worker flushes what is pending
    assert isinstance(await pending, int) and await _rows(db) == [("k", 1)]


async def test_per_key_order_is_the_hand_over_order(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=7, max_delay_ms=5)
    handed = [(f"chat{n % 3}", n) for n in range(40)]
    await asyncio.wait_for(asyncio.gather(*(batcher.run(key, _logged(key, n)) for key, n in handed)), 60)
    rows = await _rows(db)
    for chat in ("chat0", "chat1", "chat2"):
        assert [n for key, n in rows if key == chat] == [n for key, n in handed if key == chat]
    assert batcher.writes == 40 and batcher.batches < 40


async def test_an_unavailable_database_fails_every_write_of_the_batch(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=3, max_delay_ms=600_000)

    async def killed(conn: asyncpg.Connection) -> int:
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # PostgreSQL drops the connection
        return 0

    results = await asyncio.wait_for(asyncio.gather(
        batcher.run("a", _logged("a", 1)), batcher.run("b", killed), batcher.run("c", _logged("c", 3)),
        return_exceptions=True), 30)
    assert all(isinstance(result, DatabaseUnavailable) for result in results), results
    assert await _rows(db) == []  # nothing of the batch committed: each job retries
    again = asyncio.ensure_future(batcher.run("a", _logged("a", 1)))  # the batcher goes on
    await asyncio.wait_for(batcher.close(), 30)
    assert isinstance(await again, int) and await _rows(db) == [("a", 1)]


async def test_a_failing_write_fails_alone(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=3, max_delay_ms=600_000)
    results = await asyncio.wait_for(asyncio.gather(
        batcher.run("a", _logged("a", 1)), batcher.run("b", _logged("b", 2, fail=ValueError("bad"))),
        batcher.run("c", _logged("c", 3)), return_exceptions=True), 30)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], ValueError)
    assert sorted(await _rows(db)) == [("a", 1), ("c", 3)]  # its row rolled back, the others' committed


async def test_writes_handed_together_run_in_one_call_per_round_in_key_order(db: Database) -> None:
    await _table(db)
    batcher = WriteBatcher(db, max_items=100, max_delay_ms=600_000)
    calls: list[list[tuple[str, int]]] = []

    async def together(conn: asyncpg.Connection, items: list[tuple[str, int]]) -> list[int]:
        calls.append(items)
        await conn.executemany("INSERT INTO batch_log (key, n) VALUES ($1, $2)", items)
        return [n * 10 for _key, n in items]

    def run(key: str, n: int, *, alone: bool = False):  # type: ignore[no-untyped-def]
        if alone:
            return batcher.run(key, _logged(key, n))
        return batcher.run(key, _logged(key, n), together=together, item=(key, n))

    handed = [("b", 1, False), ("a", 2, False), ("b", 3, True), ("b", 4, False), ("c", 5, False), ("a", 6, False)]
    pending = [asyncio.ensure_future(run(key, n, alone=alone)) for key, n, alone in handed]
    await asyncio.wait_for(batcher.close(), 30)
    results = [await p for p in pending]
    assert [r for r, (_k, _n, alone) in zip(results, handed, strict=True) if not alone] == [10, 20, 40, 50, 60]
    assert calls == [[("a", 2), ("b", 1), ("c", 5)], [("a", 6)], [("b", 4)]]  # round by round, keys in order
    rows = await _rows(db)
    for key in ("a", "b", "c"):
        assert [n for k, n in rows if k == key] == [n for k, n, _alone in handed if k == key]
    assert (batcher.batches, batcher.writes) == (1, 6)
