"""The engine's error mapping, called directly (no queue) against the spawned emulator.

What the queue then does with each outcome is covered through the running process in
test_meta_send_errors.py; here the exact delays are checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bisnesgpt.config import load_settings
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.engine import MetaEngine
from bisnesgpt.engines.meta.pacing import Pacer, phone_key
from bisnesgpt.engines.meta.phones import PhoneCache
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from tests.support.meta import ENCRYPTION_KEY, EmulatorProc, add_meta_phone, box, insert_message, text_payload
from tests.support.procs import free_port

pytestmark = pytest.mark.e2e

PHONE = "700000000000001"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProc]:
    emu = EmulatorProc(tmp_path_factory.mktemp("engine"), phones=[f"{PHONE}:tok"])
    try:
        yield emu
    finally:
        emu.close()


@pytest.fixture
async def engine(db: Database, redis_url: str, emulator: EmulatorProc) -> AsyncIterator[MetaEngine]:
    emulator.admin("DELETE", "/rules")
    settings = load_settings(_env_file=None, encryption_key=ENCRYPTION_KEY, meta_graph_url=emulator.url,
                             meta_enforce_conversation_window=False)
    redis = redis_client(redis_url)
    async with CloudApiClient(timeout=5, connect_timeout=1) as client:
        yield MetaEngine(settings, db, client, Pacer(redis), PhoneCache(db), EventRecorder(db, "test"), box())
    await redis.aclose()


async def message(db: Database, to: str = "60190000001") -> store.MessageRecord:
    message_id = await insert_message(db, text_payload(to, "x"))
    async with db.connection() as conn:
        record = await store.load_message(conn, message_id, "acme")
    assert record is not None
    return record


async def test_usage_header_sets_the_retry_delay(db: Database, engine: MetaEngine, emulator: EmulatorProc) -> None:
    await add_meta_phone(db, phone_number_id=PHONE, token="tok")
    emulator.admin("POST", "/rules", json={"code": 80007, "times": 1, "usage_minutes": 2})
    with pytest.raises(RetryableSendError) as error:
        await engine.send(await message(db))
    assert error.value.code == "80007" and error.value.retry_after_ms is not None
    assert error.value.retry_after_ms >= 120_000


async def test_retry_delays_back_off_with_jitter_then_give_up(db: Database, engine: MetaEngine,
                                                              emulator: EmulatorProc) -> None:
    await add_meta_phone(db, phone_number_id=PHONE, token="tok")
    emulator.admin("POST", "/rules", json={"code": 130429})
    record = await message(db)
    delays = []
    for _ in range(2):
        with pytest.raises(RetryableSendError) as error:
            await engine.send(record)
        delays.append(error.value.retry_after_ms)
    assert 500 <= delays[0] <= 1500 and 1000 <= delays[1] <= 3000
    with pytest.raises(PermanentSendError) as final:
        await engine.send(record)
    assert final.value.code == "130429" and "3 attempts" in str(final.value)


async def test_pair_rate_backs_off_4_to_the_n(db: Database, engine: MetaEngine, emulator: EmulatorProc) -> None:
    await add_meta_phone(db, phone_number_id=PHONE, token="tok")
    emulator.admin("POST", "/rules", json={"code": 131056, "to": "60190000002"})
    record = await message(db, "60190000002")
    with pytest.raises(DeferSend) as deferred:
        await engine.send(record)
    assert deferred.value.delay_ms == 4000
    key = f"{phone_key('acme', 0)}:backoff:60190000002"
    await engine.pacer.redis.hset(key, "until", "0")  # the 4 s have passed; the retry is refused again
    with pytest.raises(DeferSend) as again:
        await engine.send(record)
    assert again.value.delay_ms == 16000
    other = await message(db, "60190000003")
    assert (await engine.send(other)).external_id.startswith("wamid.")


async def test_unreachable_api_is_retryable(db: Database, redis_url: str, tmp_path: Path) -> None:
    await add_meta_phone(db, phone_number_id=PHONE, token="tok")
    settings = load_settings(_env_file=None, encryption_key=ENCRYPTION_KEY,
                             meta_graph_url=f"http://127.0.0.1:{free_port()}")
    redis = redis_client(redis_url)
    try:
        async with CloudApiClient(timeout=2, connect_timeout=1) as client:
            engine = MetaEngine(settings, db, client, Pacer(redis), PhoneCache(db), EventRecorder(db, "t"), box())
            with pytest.raises(RetryableSendError) as error:
                await engine.send(await message(db))
        assert error.value.code == "NETWORK"
    finally:
        await redis.aclose()
