"""The supervisor's rules, driven with fakes: no real role is spawned.

Like uvicorn's supervisor tests: the world the supervisor touches is replaced — a fake
launcher hands out fake processes (with a real socketpair, so pings and status updates
travel the real way), a fake recorder keeps what would be written, a fake clock decides
when backoffs and deadlines are over — and the test drives the loop one ``turn`` at a
time. The shutdown tests run the real loop (``run``) in a thread, one of them with trivial
``python -c`` children.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from bisnesgpt.config import Role, Settings
from bisnesgpt.health.events import Severity
from bisnesgpt.orchestrator import protocol
from bisnesgpt.orchestrator.children import Child, ChildSpec
from bisnesgpt.orchestrator.helpers import HelperSpec
from bisnesgpt.orchestrator.judging import KILL_GRACE_S
from bisnesgpt.orchestrator.recorder import ExitedStatus
from bisnesgpt.orchestrator.spawning import Launched, ProcessLauncher
from bisnesgpt.orchestrator.supervisor import Supervisor

pytestmark = pytest.mark.unit


class FakeClock:
    """Monotonic seconds that move only when told (or by ``step`` at every reading)."""

    def __init__(self, now: float = 1000.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProcess:
    """A child process that exits when the test says (or on SIGTERM, if it obeys)."""

    def __init__(self, pid: int, *, obeys_sigterm: bool, on_terminate: Any = None) -> None:
        self._pid = pid
        self.obeys_sigterm = obeys_sigterm
        self.on_terminate = on_terminate
        self.returncode: int | None = None
        self.signals: list[str] = []  # what it got while it ran
        self.released = False
        self.group_cleared = False

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        assert self.returncode is not None, "waited for a process that still runs"
        return self.returncode

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        if self.on_terminate is not None:
            self.on_terminate()
        if self.obeys_sigterm and self.returncode is None:
            self.returncode = -signal.SIGTERM

    def kill_group(self) -> None:
        if self.returncode is None:
            self.signals.append("SIGKILL")
            self.returncode = -signal.SIGKILL
        else:
            self.group_cleared = True  # what the child left in its group, after it exited

    def release(self) -> None:
        self.released = True

    def exit(self, code: int) -> None:
        self.returncode = code


@dataclass
class FakeLauncher:
    """Hands out FakeProcesses with pids from 1000; keeps the child ends of their sockets."""

    obeys_sigterm: bool = True
    fail_next: int = 0
    on_terminate: Any = None
    next_pid: int = 1000
    processes: dict[str, list[FakeProcess]] = field(default_factory=dict)
    ends: dict[str, socket.socket] = field(default_factory=dict)
    sockets: list[socket.socket] = field(default_factory=list)

    def launch(self, spec: ChildSpec) -> Launched:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("no such file: python")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        theirs.setblocking(False)
        self.sockets += [ours, theirs]
        process = FakeProcess(self.next_pid, obeys_sigterm=self.obeys_sigterm, on_terminate=self.on_terminate)
        self.next_pid += 1
        self.processes.setdefault(spec.name, []).append(process)
        self.ends[spec.name] = theirs
        return Launched(process, ours)

    def current(self, name: str) -> FakeProcess:
        return self.processes[name][-1]

    def say(self, name: str, message: Mapping[str, object]) -> None:
        """What the child ``name`` writes to its socket."""
        self.ends[name].send(protocol.encode(message))

    def heard(self, name: str) -> list[dict[str, Any]]:
        """What the supervisor sent to the child ``name`` since the last call."""
        data = b""
        while True:
            try:
                chunk = self.ends[name].recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return [dict(m) for m in protocol.LineDecoder().feed(data)]


@dataclass
class FakeRecorder:
    """Keeps the supervisor's writes in lists."""

    events: list[tuple[str, str, dict[str, Any], Severity]] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)
    restart_counts: list[tuple[str, int]] = field(default_factory=list)
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    started: bool = False
    closed: bool = False

    def start(self) -> None:
        self.started = True

    def event(self, process_name: str, event_type: str, data: Mapping[str, object],
              severity: Severity = "info") -> None:
        self.events.append((process_name, event_type, dict(data), severity))

    def exited(self, process_name: str, role: str, instance_id: int, *, status: ExitedStatus, pid: int,
               error: str | None, exited_at: float) -> None:
        self.exits.append({"name": process_name, "status": status, "pid": pid, "error": error})

    def restarts(self, process_name: str, role: str, instance_id: int, restarts: int) -> None:
        self.restart_counts.append((process_name, restarts))

    def publish(self, channel: str, payload: Mapping[str, object]) -> None:
        self.published.append((channel, dict(payload)))

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True

    def of_type(self, event_type: str) -> list[tuple[str, dict[str, Any], Severity]]:
        return [(name, data, severity) for name, kind, data, severity in self.events if kind == event_type]


@dataclass
class Rig:
    supervisor: Supervisor
    launcher: FakeLauncher
    recorder: FakeRecorder
    clock: FakeClock
    rss: dict[int, int]

    def child(self, name: str) -> Child:
        return next(c for c in self.supervisor.children if c.name == name)

    def turn(self) -> int | None:
        return self.supervisor.turn()

    def ready(self, name: str) -> None:
        """The child ``name`` reports ready; the supervisor reads it."""
        self.launcher.say(name, {"type": protocol.STATUS_UPDATE, "status": "ready"})
        self._read(lambda: self.child(name).state == "online")

    def first_ping(self, name: str) -> None:
        """The child ``name`` pings for the first time; the supervisor reads it."""
        self.launcher.say(name, {"type": protocol.HEARTBEAT, "ts": time.time()})
        self._read(lambda: self.child(name).first_ping_at is not None)

    def _read(self, done: Any) -> None:
        deadline = time.monotonic() + 5
        while not done() and time.monotonic() < deadline:
            self.supervisor.wait_for_activity(0.05)
        assert done()

    def crash(self, name: str, code: int = 3, *, after: float = 1.0) -> None:
        """``name`` exits with ``code`` after ``after`` seconds, and the supervisor reaps it."""
        self.clock.advance(after)
        self.launcher.current(name).exit(code)
        assert self.turn() is None

    def wait_out_backoff(self, name: str) -> FakeProcess:
        """Let the backoff of ``name`` pass; the process it is restarted as."""
        child = self.child(name)
        assert child.state == "waiting"
        self.clock.now = max(self.clock.now, child.next_start_at)
        before = len(self.launcher.processes.get(name, []))
        assert self.turn() is None
        assert len(self.launcher.processes[name]) == before + 1, f"{name} was not restarted"
        return self.launcher.current(name)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"enable_wwebjs": False, "enable_meta": False, "log_dir": tmp_path / "logs"}
    return Settings(_env_file=None, **(base | overrides))


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Any]:
    made: list[Rig] = []

    def make(*, launcher: FakeLauncher | None = None, clock: FakeClock | None = None, start: bool = True,
             **settings: Any) -> Rig:
        launcher = launcher or FakeLauncher()
        clock = clock or FakeClock()
        recorder = FakeRecorder()
        rss: dict[int, int] = {}
        supervisor = Supervisor(_settings(tmp_path, **settings), database_url="postgresql://unused/db",
                                redis_url="redis://unused:6379/0", recorder=recorder, launcher=launcher,
                                clock=clock, measure_rss=lambda pid: rss.get(pid, 0))
        rig = Rig(supervisor, launcher, recorder, clock, rss)
        if start:
            supervisor.start()
        made.append(rig)
        return rig

    yield make
    for rig in made:
        for sock in rig.launcher.sockets:
            sock.close()


def _restart_events(rig: Rig, name: str) -> list[dict[str, Any]]:
    return [data for who, data, _ in rig.recorder.of_type("restart") if who == name]


def test_a_crash_is_restarted_after_a_backoff_that_doubles(make_rig: Any) -> None:
    rig = make_rig()
    assert rig.recorder.started and rig.launcher.current("api").pid == 1000
    rig.crash("api", 3, after=1.5)
    assert rig.recorder.of_type("crash") == [("api", {"signal": None, "exitCode": 3, "pid": 1000,
                                                      "uptimeSeconds": 1.5, "restartsInARow": 0}, "error")]
    assert rig.recorder.exits == [{"name": "api", "status": "crashed", "pid": 1000, "error": "exited with code 3"}]
    assert rig.launcher.current("api").released and rig.launcher.current("api").group_cleared
    child = rig.child("api")
    assert (child.state, child.status, child.in_a_row, child.restarts) == ("waiting", "restarting", 1, 1)
    restarting = [p for _, p in rig.recorder.published if p["status"] == "restarting"]
    assert restarting[-1] | {"ts": 0} == {"processName": "api", "role": "api", "status": "restarting", "pid": 1000,
                                          "ts": 0, "delayMs": 2000, "host": rig.supervisor.ctx.host,
                                          "source": "orchestrator"}

    rig.clock.advance(1.99)
    assert rig.turn() is None
    assert len(rig.launcher.processes["api"]) == 1  # the 2 s backoff is not over yet
    assert rig.wait_out_backoff("api").pid == 1001
    assert _restart_events(rig, "api") == [{"reason": "crash", "attempt": 1, "delayMs": 2000, "oldPid": 1000,
                                            "maxRestarts": 5, "newPid": 1001, "restarts": 1}]
    assert rig.recorder.restart_counts == [("api", 0), ("api", 1)]

    rig.crash("api", -signal.SIGKILL)
    assert rig.recorder.of_type("crash")[-1][1]["signal"] == "SIGKILL"
    assert rig.recorder.exits[-1]["error"] == "killed by SIGKILL"
    rig.wait_out_backoff("api")
    rig.crash("api")
    rig.wait_out_backoff("api")
    assert [(e["attempt"], e["delayMs"]) for e in _restart_events(rig, "api")] == [(1, 2000), (2, 4000), (3, 8000)]


def test_a_clean_exit_is_an_exit_not_a_crash_and_is_restarted_too(make_rig: Any) -> None:
    rig = make_rig()
    rig.crash("api", 0)
    assert rig.recorder.of_type("exit")[0][1:] == ({"signal": None, "exitCode": 0, "pid": 1000,
                                                    "uptimeSeconds": 1.0, "restartsInARow": 0}, "warning")
    assert not rig.recorder.of_type("crash")
    rig.wait_out_backoff("api")
    assert _restart_events(rig, "api")[0]["reason"] == "exit"


def test_restarts_in_a_row_start_again_after_a_stable_ready_period(make_rig: Any) -> None:
    rig = make_rig()  # api: MIN_UPTIME 10 s
    rig.crash("api")
    rig.wait_out_backoff("api")
    rig.crash("api")
    rig.wait_out_backoff("api")
    rig.ready("api")
    rig.crash("api", after=9.9)  # ready, but not long enough
    rig.wait_out_backoff("api")
    assert [e["attempt"] for e in _restart_events(rig, "api")] == [1, 2, 3]

    rig.ready("api")
    rig.crash("api", after=10.5)
    assert rig.child("api").in_a_row == 1
    rig.wait_out_backoff("api")
    assert [(e["attempt"], e["delayMs"]) for e in _restart_events(rig, "api")][-1] == (1, 2000)
    assert rig.child("api").restarts == 4  # the slot's total is never reset


def test_a_child_that_never_got_ready_never_counts_as_stable(make_rig: Any) -> None:
    rig = make_rig()
    rig.first_ping("api")
    rig.crash("api", after=30.0)  # up (and pinging) for 30 s, but it never said ready
    rig.wait_out_backoff("api")
    rig.crash("api", after=30.0)
    rig.wait_out_backoff("api")
    assert [e["attempt"] for e in _restart_events(rig, "api")] == [1, 2]


def test_a_failed_spawn_counts_as_a_crash_and_is_retried(make_rig: Any) -> None:
    rig = make_rig(launcher=FakeLauncher(fail_next=1))
    assert "api" not in rig.launcher.processes
    assert rig.recorder.of_type("crash") == [("api", {"signal": None, "exitCode": None, "error": "no such file: python",
                                                      "uptimeSeconds": 0.0, "restartsInARow": 0}, "error")]
    assert rig.recorder.exits == [{"name": "api", "status": "crashed", "pid": 0, "error": "no such file: python"}]
    rig.wait_out_backoff("api")
    assert _restart_events(rig, "api")[0] | {"newPid": 0} == {"reason": "crash", "attempt": 1, "delayMs": 2000,
                                                              "oldPid": None, "maxRestarts": 5, "newPid": 0,
                                                              "restarts": 1}


def test_giving_the_api_up_stops_everything_and_exits_1(make_rig: Any) -> None:
    rig = make_rig(api_max_restarts=2, enable_wwebjs=True)
    for _ in range(2):
        rig.crash("api")
        rig.wait_out_backoff("api")
    rig.clock.advance(1.0)
    rig.launcher.current("api").exit(1)
    assert rig.turn() == 1
    assert rig.recorder.of_type("give_up") == [("api", {
        "restarts": 2, "maxRestarts": 2, "fatal": True,
        "lastExit": {"signal": None, "exitCode": 1, "pid": 1003}}, "critical")]
    assert rig.recorder.exits[-1] == {"name": "api", "status": "errored", "pid": 1003,
                                      "error": "given up after 2 restarts"}
    assert rig.child("api").state == "given_up"
    assert rig.launcher.current("wwebjs").signals == ["SIGTERM"]  # the rest were stopped
    stop = rig.recorder.of_type("stop")[-1]
    assert stop[0] == "orchestrator"
    assert (stop[1]["reason"], stop[1]["exitCode"], stop[1]["killed"], stop[2]) == ("api given up", 1, [], "critical")


@pytest.mark.parametrize("role", ["wwebjs", "meta"])
def test_giving_an_engine_up_leaves_the_other_roles_running(make_rig: Any, role: Role) -> None:
    rig = make_rig(enable_wwebjs=role == "wwebjs", enable_meta=role == "meta", child_start_timeout=3_600_000,
                   **{f"{role}_max_restarts": 1})
    rig.crash(role)
    rig.wait_out_backoff(role)
    rig.crash(role)
    (name, data, severity), = rig.recorder.of_type("give_up")
    assert (name, data["fatal"], data["restarts"], severity) == (role, False, 1, "critical")
    assert rig.child(role).state == "given_up" and rig.child(role).status == "given_up"
    rig.clock.advance(600)
    assert rig.turn() is None  # the orchestrator goes on ...
    assert len(rig.launcher.processes[role]) == 2  # ... without that role
    assert rig.child("api").alive and rig.supervisor.exit_code == 0


def test_a_silent_child_is_stopped_as_hung_and_restarted(make_rig: Any) -> None:
    rig = make_rig(child_start_timeout=20_000, max_heartbeat_age=5_000)
    rig.clock.advance(19.0)
    assert rig.turn() is None
    assert not rig.recorder.of_type("hang")
    rig.clock.advance(1.5)
    assert rig.turn() is None  # no ping within CHILD_START_TIMEOUT
    assert rig.recorder.of_type("hang") == [("api", {"pid": 1000, "silentSeconds": 20.5, "limitSeconds": 20.0,
                                                     "pinged": False}, "error")]
    assert rig.launcher.current("api").signals == ["SIGTERM"]
    assert rig.child("api").state == "stopping"
    stopping = [p for _, p in rig.recorder.published if p["status"] == "stopping"]
    assert stopping[-1]["reason"] == "hang"

    assert rig.turn() is None  # it obeyed SIGTERM: reaped as asked to stop, not as a crash
    assert not rig.recorder.of_type("crash")
    assert rig.recorder.exits[-1] == {"name": "api", "status": "crashed", "pid": 1000, "error": None}
    rig.wait_out_backoff("api")
    assert _restart_events(rig, "api")[0]["reason"] == "hang"

    rig.first_ping("api")  # once it has pinged, the limit is MAX_HEARTBEAT_AGE
    rig.clock.advance(5.5)
    assert rig.turn() is None
    assert rig.recorder.of_type("hang")[-1][1] | {"silentSeconds": 0} == {
        "pid": 1001, "silentSeconds": 0, "limitSeconds": 5.0, "pinged": True}


def test_a_child_over_its_memory_limit_is_drained_and_restarted(make_rig: Any) -> None:
    rig = make_rig(api_max_memory="1M", memory_check_interval=5_000)
    rig.rss[1000] = 2 * 1024**2
    assert rig.turn() is None
    assert not rig.recorder.of_type("memory_restart")  # only an online child is measured
    rig.ready("api")
    rig.clock.advance(5.1)
    assert rig.turn() is None
    assert rig.recorder.of_type("memory_restart") == [("api", {"pid": 1000, "rssBytes": 2 * 1024**2,
                                                               "limitBytes": 1024**2}, "warning")]
    assert rig.launcher.current("api").signals == ["SIGTERM"]
    assert rig.turn() is None
    rig.wait_out_backoff("api")
    assert _restart_events(rig, "api")[0]["reason"] == "memory"


def test_the_memory_check_runs_once_per_interval(make_rig: Any) -> None:
    rig = make_rig(api_max_memory="1M", memory_check_interval=5_000)
    rig.ready("api")
    assert rig.turn() is None  # checked now (under the limit) ...
    rig.rss[1000] = 2 * 1024**2
    rig.clock.advance(4.9)
    assert rig.turn() is None  # ... and not again before 5 s have passed
    assert not rig.recorder.of_type("memory_restart")
    rig.clock.advance(0.2)
    assert rig.turn() is None
    assert len(rig.recorder.of_type("memory_restart")) == 1


def test_a_child_that_ignores_sigterm_is_killed_at_the_deadline(make_rig: Any) -> None:
    rig = make_rig(launcher=FakeLauncher(obeys_sigterm=False), child_start_timeout=10_000, shutdown_timeout=3.0)
    rig.clock.advance(10.5)
    assert rig.turn() is None  # hung: SIGTERM, which it ignores
    process = rig.launcher.current("api")
    assert process.signals == ["SIGTERM"] and rig.child("api").alive
    rig.clock.advance(3.0 + KILL_GRACE_S - 0.1)
    assert rig.turn() is None
    assert not rig.recorder.of_type("killed")
    rig.clock.advance(0.2)
    assert rig.turn() is None
    assert rig.recorder.of_type("killed") == [("api", {"pid": 1000, "reason": "hang"}, "warning")]
    assert process.signals == ["SIGTERM", "SIGKILL"]
    assert rig.turn() is None  # reaped next
    rig.wait_out_backoff("api")
    assert _restart_events(rig, "api")[0]["reason"] == "hang"


def test_statuses_are_relayed_to_the_siblings_and_a_newcomer_gets_a_snapshot(make_rig: Any) -> None:
    rig = make_rig(enable_wwebjs=True)
    rig.launcher.heard("api")
    rig.launcher.heard("wwebjs")
    rig.ready("wwebjs")
    assert [(m["processName"], m["status"], m["pid"]) for m in rig.launcher.heard("api")] == [
        ("wwebjs", "ready", 1001)]
    assert rig.launcher.heard("wwebjs") == []  # not echoed to the child that said it
    rig.crash("api")
    rig.wait_out_backoff("api")
    heard = rig.launcher.heard("api")  # the new api process: itself starting, then the snapshot
    assert [(m["processName"], m["status"]) for m in heard] == [("api", "starting"), ("wwebjs", "ready")]


def test_shutdown_kills_a_child_that_overstays_the_deadline(make_rig: Any) -> None:
    clock = FakeClock(step=0.5)  # every reading moves time on: the deadline comes after a few waits
    rig = make_rig(launcher=FakeLauncher(obeys_sigterm=False), clock=clock, shutdown_timeout=1.0)
    rig.supervisor.signals.push(signal.SIGTERM)
    assert rig.turn() == 0
    assert rig.launcher.current("api").signals == ["SIGTERM", "SIGKILL"]
    (name, data, severity), = rig.recorder.of_type("stop")
    assert (name, data["reason"], data["killed"], data["exitCode"], severity) == (
        "orchestrator", "SIGTERM", ["api"], 0, "info")
    assert data["seconds"] >= 1.0 + KILL_GRACE_S
    shutdown = [p for channel, p in rig.recorder.published if channel == "process:shutdown"]
    assert shutdown[0] | {"pid": 0} == {"processName": "orchestrator", "host": rig.supervisor.ctx.host, "pid": 0,
                                        "reason": "SIGTERM", "stopping": ["api"]}
    assert not rig.recorder.of_type("crash")  # exits during a shutdown are expected


def test_a_second_signal_during_shutdown_kills_at_once_in_the_running_loop(make_rig: Any) -> None:
    rig = make_rig(launcher=FakeLauncher(obeys_sigterm=False), shutdown_timeout=600.0, start=False)
    outcome: list[int] = []
    loop = threading.Thread(target=lambda: outcome.append(rig.supervisor.run(install_signals=False)), daemon=True)
    loop.start()
    _until(lambda: "api" in rig.launcher.processes)
    rig.supervisor.signals.push(signal.SIGINT)
    _until(lambda: rig.launcher.current("api").signals == ["SIGTERM"])
    assert rig.child("api").state == "stopping" and loop.is_alive()  # SIGTERM ignored: the first signal waits
    rig.supervisor.signals.push(signal.SIGINT)
    loop.join(10)
    assert outcome == [0]
    assert rig.launcher.current("api").signals == ["SIGTERM", "SIGKILL"]
    assert rig.recorder.of_type("stop")[-1][1]["killed"] == ["api"]
    assert rig.recorder.closed


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


IGNORES_SIGTERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('up', flush=True); time.sleep(60)")


@pytest.mark.timeout(60)
def test_real_trivial_children_are_stopped_by_a_second_signal(tmp_path: Path) -> None:
    settings = _settings(tmp_path, enable_wwebjs=True, shutdown_timeout=600.0)
    launcher = ProcessLauncher(settings, database_url="postgresql://unused/db", redis_url="redis://unused:6379/0",
                               command=lambda role: [sys.executable, "-c", IGNORES_SIGTERM])
    recorder = FakeRecorder()
    supervisor = Supervisor(settings, database_url="postgresql://unused/db", redis_url="redis://unused:6379/0",
                            recorder=recorder, launcher=launcher)
    outcome: list[int] = []
    loop = threading.Thread(target=lambda: outcome.append(supervisor.run(install_signals=False)), daemon=True)
    loop.start()
    logs = [tmp_path / "logs" / f"{role}-out.log" for role in ("api", "wwebjs")]
    deadline = time.monotonic() + 30
    while not all(p.exists() and "up" in p.read_text() for p in logs) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [c.pid for c in supervisor.children]
    assert all(pid is not None and psutil.pid_exists(pid) for pid in pids)

    supervisor.signals.push(signal.SIGTERM)
    while not all(c.state == "stopping" for c in supervisor.children) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert all(c.alive for c in supervisor.children)  # SIGTERM is ignored: the first signal waits
    began = time.monotonic()
    supervisor.signals.push(signal.SIGINT)
    loop.join(20)
    assert outcome == [0] and time.monotonic() - began < 10
    assert recorder.of_type("stop")[-1][1]["killed"] == ["api", "wwebjs"]
    assert not any(psutil.pid_exists(pid) for pid in pids if pid is not None)
    assert recorder.of_type("start")[0][1]["children"] == ["api", "wwebjs"]


def test_restarts_that_were_asked_for_are_recorded_as_restarting_not_crashed(make_rig: Any) -> None:
    rig = make_rig(api_max_memory="1M", memory_check_interval=5_000)
    rig.crash("api", 0)  # a clean exit 0 (a process:shutdown rolling restart): restarted, not a crash
    assert rig.recorder.exits[-1]["status"] == "restarting"
    rig.wait_out_backoff("api")
    rig.ready("api")
    rig.rss[1001] = 2 * 1024**2
    rig.clock.advance(5.1)
    assert rig.turn() is None  # over its memory limit: drained (SIGTERM)
    assert rig.turn() is None  # it obeyed: reaped
    assert rig.recorder.exits[-1] == {"name": "api", "status": "restarting", "pid": 1001, "error": None}
    rig.wait_out_backoff("api")
    rig.crash("api", -signal.SIGKILL)  # a fault stays a crash
    assert rig.recorder.exits[-1] == {"name": "api", "status": "crashed", "pid": 1002, "error": "killed by SIGKILL"}
    assert [e["status"] for e in rig.recorder.exits] == ["restarting", "restarting", "crashed"]


def test_a_child_killed_at_shutdown_is_recorded_as_stopped(make_rig: Any) -> None:
    rig = make_rig(launcher=FakeLauncher(obeys_sigterm=False), shutdown_timeout=1.0, clock=FakeClock(step=0.5))
    assert rig.supervisor.shutdown("test") == 0
    assert rig.recorder.exits == [{"name": "api", "status": "stopped", "pid": 1000,
                                   "error": "killed at shutdown (did not stop in time)"}]


# --- helpers (the demo's sandboxes) and the ready announcement --------------------------------------


@dataclass
class FakeHelperLauncher:
    """Hands out FakeProcesses for helpers, with pids from 5000."""

    next_pid: int = 5000
    processes: dict[str, list[FakeProcess]] = field(default_factory=dict)
    launched: list[str] = field(default_factory=list)

    def launch(self, spec: HelperSpec) -> FakeProcess:
        process = FakeProcess(self.next_pid, obeys_sigterm=True)
        self.next_pid += 1
        self.processes.setdefault(spec.name, []).append(process)
        self.launched.append(spec.name)
        return process

    def current(self, name: str) -> FakeProcess:
        return self.processes[name][-1]


@pytest.fixture
def helper_rig(tmp_path: Path) -> Iterator[tuple[Rig, FakeHelperLauncher, set[int], list[float]]]:
    """A rig whose supervisor also runs one helper (port 3010, serving once the test says so)."""
    launcher, helpers, clock, recorder = FakeLauncher(), FakeHelperLauncher(), FakeClock(), FakeRecorder()
    serving: set[int] = set()
    announced: list[float] = []
    supervisor = Supervisor(_settings(tmp_path), database_url="postgresql://unused/db",
                            redis_url="redis://unused:6379/0", recorder=recorder, launcher=launcher, clock=clock,
                            helpers=[HelperSpec("sandbox-wweb", ("sandbox", "wweb", "serve"), 3010)],
                            helper_launcher=helpers, on_ready=lambda: announced.append(clock.now))
    supervisor.helpers.probe = lambda _host, port: port in serving
    supervisor.start()
    yield Rig(supervisor, launcher, recorder, clock, {}), helpers, serving, announced
    for sock in launcher.sockets:
        sock.close()


def test_the_ready_announcement_waits_for_every_role_and_helper_and_comes_once(helper_rig: Any) -> None:
    rig, helpers, serving, announced = helper_rig
    assert helpers.launched == ["sandbox-wweb"]  # started with the roles, before them
    rig.ready("api")
    assert rig.turn() is None
    assert announced == []  # the helper does not serve yet
    serving.add(3010)
    rig.clock.advance(0.5)
    assert rig.turn() is None
    assert announced == [rig.clock.now]
    assert rig.supervisor.everything_ready
    rig.crash("api", 3)  # a later restart is no new announcement
    rig.wait_out_backoff("api")
    rig.ready("api")
    assert rig.turn() is None
    assert len(announced) == 1


def test_a_helper_that_dies_is_recorded_and_started_again_after_a_growing_backoff(helper_rig: Any) -> None:
    rig, helpers, serving, _announced = helper_rig
    serving.add(3010)
    rig.clock.advance(0.5)
    assert rig.turn() is None
    first = helpers.current("sandbox-wweb")
    first.exit(-signal.SIGKILL)
    rig.clock.advance(1.0)
    assert rig.turn() is None
    assert rig.recorder.of_type("crash")[-1][:2] == ("sandbox-wweb", {
        "signal": "SIGKILL", "exitCode": None, "pid": 5000, "uptimeSeconds": 1.5, "restartsInARow": 0})
    assert first.released and len(helpers.processes["sandbox-wweb"]) == 1
    assert not rig.supervisor.helpers.ready
    rig.clock.advance(1.0)  # HELPER_RESTART_DELAY_MS
    assert rig.turn() is None
    second = helpers.current("sandbox-wweb")
    assert second.pid == 5001
    assert rig.recorder.of_type("restart")[-1][:2] == ("sandbox-wweb", {"newPid": 5001, "attempt": 1,
                                                                        "restarts": 1})
    second.exit(1)  # at once again: the backoff doubles
    rig.clock.advance(0.1)
    assert rig.turn() is None
    rig.clock.advance(1.5)
    assert rig.turn() is None
    assert len(helpers.processes["sandbox-wweb"]) == 2  # 2 s this time
    rig.clock.advance(0.6)
    assert rig.turn() is None
    assert len(helpers.processes["sandbox-wweb"]) == 3
    assert rig.recorder.exits == []  # a helper has no process_health row


def test_shutdown_stops_the_helpers_after_the_roles(helper_rig: Any) -> None:
    rig, helpers, _serving, _announced = helper_rig
    order: list[str] = []
    rig.launcher.current("api").on_terminate = lambda: order.append("api")
    helpers.current("sandbox-wweb").on_terminate = lambda: order.append("sandbox-wweb")
    assert rig.supervisor.shutdown("test") == 0
    assert order == ["api", "sandbox-wweb"]
    assert helpers.current("sandbox-wweb").returncode == -signal.SIGTERM
    assert rig.supervisor.helpers.slots[0].process is None
