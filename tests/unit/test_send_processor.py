"""Every branch of ``SendJobProcessor``, with an in-memory store, a fake job and a scripted engine.

What the real queue and database add (BullMQ's retries, the SQL state rule) is covered by
``tests/integration/test_worker_helper.py``; here each outcome of one run is pinned down.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from bullmq.custom_errors import DelayedError, UnrecoverableError
from redis.exceptions import ConnectionError as RedisConnectionError

from bisnesgpt.core.errors import DatabaseUnavailable, QueueUnavailable
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.messaging import send_processor, send_store
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError, RetryableSendError
from bisnesgpt.messaging.queues import QueueProducer, QueueSpec
from bisnesgpt.messaging.send_processor import (
    DELAYED_RETRIES_KEY,
    Outcome,
    OutcomeKind,
    SendJobProcessor,
    SendReceipt,
)
from bisnesgpt.messaging.send_store import PgSendStore
from bisnesgpt.messaging.store import MessageRecord
from bisnesgpt.messaging.wakeups import Wakeups
from tests.support.fakes import FakeJob, InMemorySendStore, ScriptedEngine, message_record

pytestmark = pytest.mark.unit

SPEC = QueueSpec("test-messages", "send-message", 3, {"type": "fixed", "delay": 20}, 4, "test")
OURS: JsonObject = {"messageId": "m1", "companyId": "acme", "phoneIndex": 0}


class Harness:
    """One processor over fakes, with every outcome its listener heard."""

    def __init__(self, *, engine: ScriptedEngine | None = None, wakeups: Wakeups | None = None) -> None:
        self.store = InMemorySendStore()
        self.engine = engine or ScriptedEngine()
        self.heard: list[OutcomeKind] = []
        self.processor = SendJobProcessor(self.store, self.engine, SPEC, process_name="worker-1",
                                          on_outcome=lambda kind, _seconds: self.heard.append(kind),
                                          wakeups=wakeups)

    async def run(self, job: FakeJob) -> Outcome:
        """One run of the job (the exception it raised propagates)."""
        return await self.processor.process(job, "token")


@pytest.fixture
def harness() -> Harness:
    h = Harness()
    h.store.add(message_record("m1"))
    return h


# --- job formats and loading ------------------------------------------------------------------------


async def test_our_job_format_sends_the_stored_message_and_records_it_sent(harness: Harness) -> None:
    harness.engine.send_script = [SendReceipt("wamid.1", {"wa_id": "60123456789"})]
    outcome = await harness.run(FakeJob(dict(OURS)))
    assert outcome == Outcome("sent", external_id="wamid.1")
    record = harness.store.messages["m1"]
    assert (record.status, record.external_id, record.attempts) == ("sent", "wamid.1", 1)
    assert record.error_details == {"wa_id": "60123456789"}  # the receipt's detail reached the store
    assert record.process_name == "worker-1"
    assert set(harness.store.sources) == {SPEC.process_name}
    assert [c[0] for c in harness.store.calls] == ["load", "claim", "sent"]
    assert harness.heard == ["sent"]


async def test_the_job_result_is_the_outcome_as_json(harness: Harness) -> None:
    assert await harness.processor(FakeJob(dict(OURS)), "token") == {"outcome": "sent", "externalId": "ext-m1"}
    assert Outcome("skipped", status="read").as_job_result() == {"outcome": "skipped", "status": "read"}


def only_message(h: Harness) -> MessageRecord:
    """The one message the store holds."""
    assert len(h.store.messages) == 1
    return next(iter(h.store.messages.values()))


async def test_a_node_format_job_is_recorded_first_then_sent() -> None:
    h = Harness()
    job = FakeJob({"companyId": "acme", "phoneIndex": 2,
                   "messageData": {"to": "60198765432@c.us", "message": "from node"}}, id="node-job-1")
    outcome = await h.run(job)
    record = only_message(h)
    assert outcome == Outcome("sent", external_id=f"ext-{record.message_id}")
    assert record.message_id != "node-job-1"  # its own id: Node job ids repeat across queues
    assert (record.source, record.content, record.chat_id, record.phone_index, record.external_ref) == (
        "node-job", "from node", "60198765432@c.us", 2, "node-job-1")
    assert record.status == "sent"
    assert h.store.calls[:2] == [("record_node_job", "node-job-1"), ("record", record.message_id)]


async def test_a_node_format_job_run_twice_is_recorded_once_and_sent_once() -> None:
    h = Harness()
    data: JsonObject = {"companyId": "acme", "messageData": {"to": "60198765432", "message": "x"}}
    await h.run(FakeJob(dict(data), id="n2"))
    assert await h.run(FakeJob(dict(data), id="n2")) == Outcome("skipped", status="sent")
    assert len(h.store.messages) == 1
    assert h.engine.send_calls == 1


async def test_a_node_job_id_reused_for_other_content_fails_the_job_visibly(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    await h.run(FakeJob({"companyId": "acme", "messageData": {"to": "60198765432", "message": "first"}}, id="7"))
    with caplog.at_level(logging.ERROR, logger=send_processor.__name__), \
            pytest.raises(UnrecoverableError, match="JOB_ID_COLLISION"):
        await h.run(FakeJob({"companyId": "acme", "messageData": {"to": "60198765432", "message": "second"}}, id="7"))
    assert "job 7 on test-messages refused: JOB_ID_COLLISION" in caplog.text
    assert h.engine.send_calls == 1 and len(h.store.messages) == 1
    assert h.heard == ["sent", "failed"]


async def test_a_node_job_of_an_unknown_company_fails_at_once_with_the_reason() -> None:
    h = Harness()
    h.store.unknown_companies = frozenset({"nosuch"})
    job = FakeJob({"companyId": "nosuch", "messageData": {"to": "60198765432", "message": "x"}}, id="1")
    with pytest.raises(UnrecoverableError, match=r"^COMPANY_NOT_FOUND: company 'nosuch' does not exist"):
        await h.run(job)
    assert h.store.messages == {} and h.engine.before_calls == 0


@pytest.mark.parametrize("data", [{}, {"phoneIndex": 0}, {"companyId": "acme", "messageData": "not a dict"}, None])
async def test_unrecognised_job_data_fails_the_job_for_good(data: JsonObject | None) -> None:
    h = Harness()
    with pytest.raises(UnrecoverableError, match="unrecognised job data keys"):
        await h.run(FakeJob(data))
    assert h.store.calls == []
    assert h.heard == ["failed"]


async def test_a_missing_message_fails_the_job_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    with caplog.at_level(logging.ERROR, logger=send_processor.__name__), \
            pytest.raises(UnrecoverableError, match=r"^MESSAGE_NOT_FOUND: message m1 of company acme not found"):
        await h.run(FakeJob(dict(OURS)))
    assert "refused: MESSAGE_NOT_FOUND" in caplog.text
    assert h.engine.before_calls == h.engine.send_calls == 0
    assert h.heard == ["failed"]


async def test_another_companys_message_is_not_found(harness: Harness) -> None:
    with pytest.raises(UnrecoverableError, match="MESSAGE_NOT_FOUND"):
        await harness.run(FakeJob({"messageId": "m1", "companyId": "globex"}))


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed", "cancelled"])
async def test_a_message_past_sending_is_skipped_without_touching_the_engine(status: str) -> None:
    h = Harness()
    h.store.add(message_record("m1", status=status))
    assert await h.run(FakeJob(dict(OURS))) == Outcome("skipped", status=status)  # type: ignore[arg-type]
    assert h.engine.before_calls == h.engine.send_calls == 0
    assert [c[0] for c in h.store.calls] == ["load"]
    assert h.heard == ["skipped"]


# --- before_send ------------------------------------------------------------------------------------


async def test_before_send_deferral_delays_the_job_without_claiming_it(harness: Harness) -> None:
    harness.engine.before_script = [DeferSend("pacing: next slot", delay_ms=1500)]
    job = FakeJob(dict(OURS))
    before = int(time.time() * 1000)
    with pytest.raises(DelayedError, match="pacing: next slot"):
        await harness.run(job)
    assert len(job.delayed_until) == 1
    assert before + 1500 <= job.delayed_until[0] <= int(time.time() * 1000) + 1500
    assert harness.engine.send_calls == 0
    assert harness.store.status("m1") == "queued"
    assert [c[0] for c in harness.store.calls] == ["load"]
    assert harness.heard == ["deferred"]


async def test_before_send_refusal_fails_the_message_with_its_code_and_title(harness: Harness) -> None:
    harness.engine.before_script = [PermanentSendError("outside window", code="131047", title="Re-engagement",
                                                       details={"window": "closed"})]
    with pytest.raises(UnrecoverableError, match="131047: Re-engagement"):
        await harness.run(FakeJob(dict(OURS)))
    record = harness.store.messages["m1"]
    assert (record.status, record.error_code, record.error_title, record.error_details) == (
        "failed", "131047", "Re-engagement", {"window": "closed"})
    assert harness.engine.send_calls == 0
    assert harness.heard == ["failed"]


async def test_a_deferral_past_the_messages_deadline_fails_it() -> None:
    h = Harness()
    h.store.add(message_record("m1", deadline_at=datetime.now(UTC) - timedelta(seconds=1)))
    h.engine.before_script = [DeferSend("session not ready", delay_ms=5000)]
    job = FakeJob(dict(OURS))
    with pytest.raises(UnrecoverableError, match="deadline exceeded"):
        await h.run(job)
    record = h.store.messages["m1"]
    assert (record.status, record.error_code, record.error_title) == (
        "failed", "DEADLINE_EXCEEDED", "not sent before its deadline: session not ready")
    assert job.delayed_until == []
    assert h.heard == ["failed"]


async def test_a_deferral_before_the_deadline_just_waits() -> None:
    h = Harness()
    h.store.add(message_record("m1", deadline_at=datetime.now(UTC) + timedelta(hours=1)))
    h.engine.before_script = [DeferSend("session not ready", delay_ms=5000)]
    with pytest.raises(DelayedError):
        await h.run(FakeJob(dict(OURS)))
    assert h.store.status("m1") == "queued"


# --- the claim and the send -------------------------------------------------------------------------


async def test_a_refused_claim_skips_the_send(harness: Harness) -> None:
    harness.store.refuse_claims = True
    assert await harness.run(FakeJob(dict(OURS))) == Outcome("skipped")
    assert harness.engine.before_calls == 1
    assert harness.engine.send_calls == 0
    assert harness.heard == ["skipped"]


async def test_an_ordered_message_behind_an_unfinished_one_of_its_chat_waits_without_an_attempt() -> None:
    h = Harness()
    h.store.add(message_record("m1", id=1, chat_seq=1))
    h.store.add(message_record("m2", id=2, chat_seq=2))
    h.store.add(message_record("other-chat", id=3, chat_seq=1, chat_id="60199999999@c.us"))
    job = FakeJob({"messageId": "m2", "companyId": "acme"}, id="m2")
    with pytest.raises(DelayedError):
        await h.run(job)
    assert h.engine.send_calls == 0 and h.store.status("m2") == "queued" and h.store.messages["m2"].attempts == 0
    assert len(job.delayed_until) == 1 and h.heard == ["deferred"]
    # Its chat's other messages and other chats are not held back.
    assert (await h.run(FakeJob({"messageId": "other-chat", "companyId": "acme"}, id="o"))).kind == "sent"
    assert (await h.run(FakeJob({"messageId": "m1", "companyId": "acme"}, id="m1"))).kind == "sent"
    assert (await h.run(job)).kind == "sent"  # m1 ended: m2 goes now


async def test_a_message_left_sending_by_a_dead_run_is_claimed_again() -> None:
    h = Harness()
    h.store.add(message_record("m1", status="sending", attempts=1))
    assert (await h.run(FakeJob(dict(OURS), attemptsMade=1))).kind == "sent"
    assert h.store.messages["m1"].attempts == 2


async def test_send_deferral_delays_the_job_and_keeps_the_message_sending(harness: Harness) -> None:
    harness.engine.send_script = [DeferSend("recipient backoff", delay_ms=200)]
    job = FakeJob(dict(OURS))
    with pytest.raises(DelayedError, match="recipient backoff"):
        await harness.run(job)
    assert len(job.delayed_until) == 1
    assert job.promotions == 0
    assert harness.store.status("m1") == "sending"
    assert harness.heard == ["deferred"]


async def test_a_deferral_waiting_for_a_condition_is_noted_for_its_wake_up() -> None:
    wakeups = Wakeups()
    h = Harness(wakeups=wakeups)
    h.store.add(message_record("m1"))
    h.engine.send_script = [DeferSend("session not ready", delay_ms=60_000, wake_on="ready:acme:0")]
    job = FakeJob(dict(OURS))
    with pytest.raises(DelayedError):
        await h.run(job)
    assert job.promotions == 0
    assert wakeups.wake("ready:acme:0") == ["job-1"]


async def test_a_condition_that_came_true_while_deferring_promotes_the_job_at_once() -> None:
    wakeups = Wakeups()
    h = Harness(wakeups=wakeups)
    h.store.add(message_record("m1"))
    defer = DeferSend("session not ready", delay_ms=60_000, wake_on="ready:acme:0")
    wakeups.wake("ready:acme:0")  # the session came up after the engine looked, before the job was noted
    h.engine.send_script = [defer]
    job = FakeJob(dict(OURS))
    with pytest.raises(DelayedError):
        await h.run(job)
    assert job.promotions == 1
    assert len(job.delayed_until) == 1


async def test_a_promotion_that_finds_the_job_running_again_is_harmless() -> None:
    wakeups = Wakeups()
    h = Harness(wakeups=wakeups)
    h.store.add(message_record("m1"))
    defer = DeferSend("session not ready", delay_ms=60_000, wake_on="ready:acme:0")
    wakeups.wake("ready:acme:0")
    h.engine.before_script = [defer]
    job = FakeJob(dict(OURS), promote_error=TypeError("job not in the delayed state"))
    with pytest.raises(DelayedError):
        await h.run(job)
    assert job.promotions == 0


async def test_without_wakeups_or_a_job_id_nothing_is_noted_or_promoted() -> None:
    h = Harness()
    h.store.add(message_record("m1"))
    h.engine.send_script = [DeferSend("x", delay_ms=10, wake_on="ready:acme:0")]
    job = FakeJob(dict(OURS))
    with pytest.raises(DelayedError):
        await h.run(job)
    assert job.promotions == 0
    wakeups = Wakeups()
    h2 = Harness(wakeups=wakeups)
    h2.store.add(message_record("m1"))
    h2.engine.send_script = [DeferSend("x", delay_ms=10, wake_on="ready:acme:0")]
    with pytest.raises(DelayedError):
        await h2.run(FakeJob(dict(OURS), id=None))
    assert wakeups.waiting("ready:acme:0") == 0


async def test_a_permanent_send_error_fails_the_message(harness: Harness) -> None:
    harness.engine.send_script = [PermanentSendError("bad number", code="131026", title="Message undeliverable")]
    with pytest.raises(UnrecoverableError, match="131026: Message undeliverable"):
        await harness.run(FakeJob(dict(OURS)))
    record = harness.store.messages["m1"]
    assert (record.status, record.error_code, record.error_title) == ("failed", "131026", "Message undeliverable")
    assert harness.heard == ["failed"]


# --- retries ----------------------------------------------------------------------------------------


async def test_a_retryable_error_with_attempts_left_goes_back_to_the_queue(harness: Harness) -> None:
    error = RetryableSendError("timeout", code="131000")
    harness.engine.send_script = [error]
    job = FakeJob(dict(OURS), attemptsMade=1)
    with pytest.raises(RetryableSendError) as raised:
        await harness.run(job)
    assert raised.value is error  # BullMQ's backoff takes it from here
    assert job.delayed_until == [] and job.updates == []
    assert harness.store.status("m1") == "sending"
    assert harness.heard == ["error"]


async def test_a_provider_given_delay_is_honoured_and_counted_in_the_job_data(harness: Harness) -> None:
    harness.engine.send_script = [RetryableSendError("slow down", code="130429", retry_after_ms=3000)]
    job = FakeJob({**OURS, DELAYED_RETRIES_KEY: 0})
    before = int(time.time() * 1000)
    with pytest.raises(DelayedError, match="slow down"):
        await harness.run(job)
    assert job.updates == [{**OURS, DELAYED_RETRIES_KEY: 1}]
    assert before + 3000 <= job.delayed_until[0] <= int(time.time() * 1000) + 3000
    assert harness.store.status("m1") == "sending"
    assert harness.heard == ["deferred"]


async def test_the_last_attempt_fails_the_message_and_the_job(harness: Harness) -> None:
    harness.engine.send_script = [RetryableSendError("down", code="131000", title="Service unavailable",
                                                     details={"retry": True})]
    with pytest.raises(UnrecoverableError, match=r"131000: Service unavailable \(out of attempts\)"):
        await harness.run(FakeJob(dict(OURS), attemptsMade=2))
    record = harness.store.messages["m1"]
    assert (record.status, record.error_code, record.error_title, record.error_details) == (
        "failed", "131000", "Service unavailable", {"retry": True})
    assert harness.heard == ["failed"]


async def test_without_a_code_the_last_attempt_fails_as_retries_exhausted(harness: Harness) -> None:
    harness.engine.send_script = [RetryableSendError("flaky")]
    with pytest.raises(UnrecoverableError, match="RETRIES_EXHAUSTED: flaky"):
        await harness.run(FakeJob(dict(OURS), attemptsMade=2))
    assert harness.store.messages["m1"].error_code == "RETRIES_EXHAUSTED"


async def test_provider_delayed_retries_count_against_the_attempts(harness: Harness) -> None:
    harness.engine.send_script = [RetryableSendError("slow down", code="130429", retry_after_ms=20)]
    job = FakeJob({**OURS, DELAYED_RETRIES_KEY: 2}, attemptsMade=0)
    with pytest.raises(UnrecoverableError, match="out of attempts"):
        await harness.run(job)
    assert job.updates == [] and job.delayed_until == []
    assert harness.store.status("m1") == "failed"


@pytest.mark.parametrize(("opts", "attempts_made", "fails"), [
    ({"attempts": 5}, 3, False), ({"attempts": 5}, 4, True),  # the job's own budget
    (None, 2, True), ({}, 1, False),  # the queue's (3)
    ({"attempts": 0}, 0, True),  # no budget: one try
])
async def test_the_attempts_come_from_the_job_options_then_the_queue(opts: JsonObject | None, attempts_made: int,
                                                                     fails: bool) -> None:
    h = Harness(engine=ScriptedEngine(send_script=[RetryableSendError("down")]))
    h.store.add(message_record("m1"))
    with pytest.raises(UnrecoverableError if fails else RetryableSendError):
        await h.run(FakeJob(dict(OURS), opts=opts, attemptsMade=attempts_made))


@pytest.mark.parametrize("error", [DatabaseUnavailable("PostgreSQL unavailable: restarting"),
                                   QueueUnavailable("Redis unavailable"), RedisConnectionError("gone")])
async def test_an_outage_passes_through_untouched(harness: Harness, error: Exception) -> None:
    harness.engine.send_script = [error]
    job = FakeJob(dict(OURS), attemptsMade=2)  # even on the last attempt: an outage costs none
    with pytest.raises(type(error)) as raised:
        await harness.run(job)
    assert raised.value is error
    assert job.updates == [] and job.delayed_until == []
    assert harness.store.status("m1") == "sending"
    assert harness.heard == ["error"]


async def test_an_unexpected_exception_is_retried_as_internal(harness: Harness,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    error = KeyError("payload")
    harness.engine.send_script = [error]
    with caplog.at_level(logging.ERROR, logger=send_processor.__name__), pytest.raises(KeyError) as raised:
        await harness.run(FakeJob(dict(OURS)))
    assert raised.value is error
    assert "unexpected error sending m1" in caplog.text
    assert harness.store.status("m1") == "sending"
    assert harness.heard == ["error"]


async def test_an_unexpected_exception_on_the_last_attempt_fails_internal(harness: Harness) -> None:
    harness.engine.send_script = [RuntimeError()]
    with pytest.raises(UnrecoverableError, match=r"INTERNAL: RuntimeError \(out of attempts\)"):
        await harness.run(FakeJob(dict(OURS), attemptsMade=2))
    record = harness.store.messages["m1"]
    assert (record.status, record.error_code, record.error_title) == ("failed", "INTERNAL", "RuntimeError")


# --- the listener and the deferral log --------------------------------------------------------------


async def test_the_listener_hears_every_kind_with_the_time_taken() -> None:
    timings: list[tuple[OutcomeKind, float]] = []
    store = InMemorySendStore()
    for message_id, status in (("sent", "queued"), ("skipped", "read"), ("deferred", "queued"),
                               ("failed", "queued"), ("error", "queued")):
        store.add(message_record(message_id, status=status))
    engine = ScriptedEngine(send_script=[None, DeferSend("later", delay_ms=10), PermanentSendError("no", code="1"),
                                         RetryableSendError("again")])
    processor = SendJobProcessor(store, engine, SPEC, process_name="w",
                                 on_outcome=lambda kind, seconds: timings.append((kind, seconds)))
    for message_id in ("sent", "skipped", "missing", "deferred", "failed", "error"):
        try:
            await processor.process(FakeJob({"messageId": message_id}), "token")
        except (DelayedError, UnrecoverableError, RetryableSendError):
            pass
    assert [kind for kind, _ in timings] == ["sent", "skipped", "failed", "deferred", "failed", "error"]
    assert all(seconds >= 0 for _, seconds in timings)


async def test_no_listener_is_fine(harness: Harness) -> None:
    processor = SendJobProcessor(harness.store, harness.engine, SPEC, process_name="w")
    assert (await processor.process(FakeJob(dict(OURS)), "t")).kind == "sent"


async def test_deferrals_are_logged_at_info_once_per_reason_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    for n in range(6):
        h.store.add(message_record(f"m{n}"))
    h.engine.before_script = [DeferSend("session not ready: qr", delay_ms=30_000),
                              DeferSend("session not ready: loading", delay_ms=30_000),  # same reason
                              DeferSend("pacing", delay_ms=300),  # under a second: DEBUG
                              DeferSend("window: closed", delay_ms=5000),  # another reason
                              DeferSend("x", delay_ms=5000, wake_on="ready:acme:0"),  # keyed by condition
                              DeferSend("session not ready: qr", delay_ms=30_000)]  # after the interval
    levels: list[int] = []
    with caplog.at_level(logging.DEBUG, logger=send_processor.__name__):
        for n in range(6):
            if n == 5:  # the interval has passed since the first one was logged
                h.processor._deferrals_logged["session not ready"] -= send_processor.DEFERRAL_LOG_INTERVAL_S
            caplog.clear()
            with pytest.raises(DelayedError):
                await h.run(FakeJob({"messageId": f"m{n}"}))
            [record] = [r for r in caplog.records if "deferred" in r.getMessage()]
            levels.append(record.levelno)
            if n == 0:
                assert record.getMessage() == "message m0 deferred 30000 ms: session not ready: qr"
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG, logging.INFO, logging.INFO, logging.INFO]


async def test_the_deferral_log_memory_is_bounded() -> None:
    h = Harness()
    h.store.add(message_record("m1"))
    h.processor._deferrals_logged.update({f"reason-{n}": 0.0 for n in range(1001)})
    h.engine.before_script = [DeferSend("new reason", delay_ms=5000)]
    with pytest.raises(DelayedError):
        await h.run(FakeJob(dict(OURS)))
    assert list(h.processor._deferrals_logged) == ["new reason"]


# --- PgSendStore's patience when recording `sent` -----------------------------------------------------


class _NoDatabase:
    """A ``Database`` whose transactions open on a fake connection (the statements are monkeypatched)."""

    def transaction(self) -> _NoDatabase:
        return self

    async def __aenter__(self) -> object:
        return object()

    async def __aexit__(self, *_exc: object) -> None:
        return None


async def test_recording_sent_waits_out_a_short_database_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [DatabaseUnavailable("restarting"), DatabaseUnavailable("restarting")]
    recorded: list[tuple[str, str | None]] = []

    async def advance(_conn: object, _pk: int, status: str, **kwargs: object) -> None:
        if failures:
            raise failures.pop(0)
        recorded.append((status, kwargs.get("external_id")))  # type: ignore[arg-type]

    async def touch(*_args: object) -> None:
        recorded.append(("touched", None))

    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(send_store, "advance_status", advance)
    monkeypatch.setattr("bisnesgpt.messaging.store.touch_outbound_session", touch)
    monkeypatch.setattr("asyncio.sleep", sleep)
    pg = PgSendStore(_NoDatabase(), QueueProducer("redis://127.0.0.1:1"))  # type: ignore[arg-type]
    await pg.record_sent(message_record("m1"), "wamid.1", {}, source="test")
    assert recorded == [("sent", "wamid.1"), ("touched", None)]
    assert pauses == [0.2, 0.4]


async def test_recording_sent_gives_up_after_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    async def advance(*_args: object, **_kwargs: object) -> None:
        raise DatabaseUnavailable("down")

    async def sleep(_seconds: float) -> None:
        return None

    monkeypatch.setattr(send_store, "advance_status", advance)
    monkeypatch.setattr("asyncio.sleep", sleep)
    pg = PgSendStore(_NoDatabase(), QueueProducer("redis://127.0.0.1:1"), patience_s=0.0)  # type: ignore[arg-type]
    with pytest.raises(DatabaseUnavailable, match="down"):
        await pg.record_sent(message_record("m1"), "wamid.1", {}, source="test")
