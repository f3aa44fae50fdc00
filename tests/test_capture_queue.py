"""The capture never blocks Locust's hub: it sends the samples through a pipe to the runner,
whose writer thread stores them through a bounded queue. When the store falls behind for longer
than the queue lasts (here: locked by another connection), or the runner does not read the
pipe, samples are dropped, counted, the count is stored with the run, and every check that
reads the run is an error naming it. Never a silent gap, never an unbounded queue."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_perfsig.errors import LoadError
from pytest_perfsig.gate import Gate, GateOptions
from pytest_perfsig.load import capture as capture_module
from pytest_perfsig.load import runner as runner_module
from pytest_perfsig.load import writer as writer_module
from pytest_perfsig.load.capture import SampleCapture
from pytest_perfsig.load.channel import ENV_QUEUE, PipeSender
from pytest_perfsig.load.receiver import SampleReceiver
from pytest_perfsig.load.runner import LoadResult, LoadSpec
from pytest_perfsig.load.writer import ENV_PRIORITY, SampleWriter
from pytest_perfsig.monspec import load_monspec
from pytest_perfsig.store import RunRecord, SqliteStore
from sample_app.launcher import RunningApp
from tests.capturing import Piped
from tests.locking import locked
from tests.waiting import when_stored

T0 = 1_700_000_000.0
SVC = "Svc"
MONSPEC = {
    SVC: {
        "environments": {"Staging": {}, "Production": {}},
        "comparisons": [{"name": "StagingToProduction", "source": "Staging", "compare": "Production"}],
        "perfsignature": [
            {"timeseries": "service.responsetime", "aggregate": "avg"},
            {"timeseries": "service.failurerate", "aggregate": "avg"},
        ],
    }
}


def _fire(capture: SampleCapture, k: int) -> None:
    capture.on_request("GET", "/x", 5.0, 10, exception=None, start_time=T0 + k / 100, context={})


def test_a_store_locked_longer_than_the_queue_lasts_drops_counts_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "perfsig.db"
    monkeypatch.setenv("PERFSIG_STORE_TIMEOUT", "0.2")  # the writer retries, as it would after 30 s
    # One writer, at normal priority, throughout: this test is about the queue's bound (the
    # hand-over from an idle-priority writer is tests/test_capture_priority.py's).
    monkeypatch.setenv(ENV_PRIORITY, "normal")
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_ROWS", 10)
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_S", 3600.0)
    with SqliteStore(path) as store:
        for env in ("Staging", "Production"):
            store.create_run(RunRecord(f"run-{env}", SVC, env, gate_id="g", status="completed"))
    piped = Piped(path, "run-Staging", SVC, "Staging", capacity=100)  # the queues hold 100 samples
    with locked(path):
        started = time.monotonic()
        for k in range(300):
            _fire(piped.capture, k)  # never waits for the store
        assert time.monotonic() - started < 1.0
        assert _read(piped, 300)
        time.sleep(0.5)  # the writer keeps failing on the lock meanwhile
        writer = piped.writer
        assert writer.queued == 100 and writer.dropped == 200 and writer.failed_writes
    assert piped.close()  # the lock is gone: the queue is stored, and the count with it
    with SqliteStore(path) as store:
        assert store.run_counts("run-Staging") == (100, 0)
        run = store.run("run-Staging")
        assert run is not None and run.dropped == 200
        assert store.baseline_runs(SVC, "Staging", 1, passed_only=False) == []  # never a baseline
        store.add_samples(
            [("run-Production", T0 + k / 100, SVC, "Production", "/x", 5.0, 1, 200) for k in range(300)]
        )
        monspec_path = tmp_path / "monspec.json"
        monspec_path.write_text(json.dumps(MONSPEC))
        gate = Gate(
            load_monspec(monspec_path), GateOptions(stage="Staging", store_path=path, warmup_s=0.0), store
        )
        gate.load_results = {
            (SVC, env): LoadResult(
                LoadSpec(SVC, env, "http://127.0.0.1:1", "-", 1, 1, 3.0),
                f"run-{env}",
                0,
                0,
                (T0, T0 + 3),
                Path("-"),
            )
            for env in ("Staging", "Production")
        }
        verdicts = [gate.verdict(check) for check in gate.checks]
    assert [v.status for v in verdicts] == ["error", "error"]
    assert all(
        v.message.endswith("capture fell behind: 200 samples dropped (Staging run run-Staging: 200)")
        for v in verdicts
    ), [v.message for v in verdicts]


def test_the_queue_stays_bounded_while_the_store_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFSIG_STORE_TIMEOUT", "0.1")
    piped = Piped(tmp_path / "perfsig.db", "run-1", SVC, "Staging", capacity=1000)
    SqliteStore(tmp_path / "perfsig.db").close()
    with locked(tmp_path / "perfsig.db"):
        for k in range(20_000):
            _fire(piped.capture, k)
            assert piped.sender.queued <= 1000
        assert _read(piped, piped.sender.sent)
        sender, writer = piped.sender, piped.writer
        assert writer.queued <= 1000  # never more rows in memory than the queue holds
        # Each row is in the buffer, the sender's backlog, the pipe or the writer, or dropped.
        assert sender.sent + sender.queued + sender.dropped + len(piped.capture.buffer) == 20_000
        assert writer.written == 0
        # What reached the writer is queued or dropped with the drops the sender told of (the
        # receiver may be inside a frame: wait for it, the sender sends nothing more).
        deadline = time.monotonic() + 10.0
        while writer.queued + writer.dropped != sender.sent + piped.receiver.sender_dropped:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert piped.close()  # the sender's count of its drops reaches the writer too
    assert piped.writer.written + piped.writer.dropped == 20_000


def test_a_store_that_never_comes_back_fails_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFSIG_STORE_TIMEOUT", "0.1")
    path = tmp_path / "perfsig.db"
    SqliteStore(path).close()
    piped = Piped(path, "run-1", SVC, "Staging")
    with locked(path):
        _fire(piped.capture, 0)
        assert not piped.close()  # the runner's close: _collect then fails the load with the reason
    assert piped.receiver.problem is not None
    assert "store did not take the last samples in time: 1 samples dropped" in piped.receiver.problem
    assert piped.writer.dropped == 1


class _Environment:
    process_exit_code: int | None = None


def test_a_runner_that_stops_reading_fails_the_locust_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No one reads the pipe: the hub never waits for it, the backlog stays bounded, and the
    close gives up and makes Locust exit with an error the runner reports."""
    monkeypatch.setattr(capture_module, "CLOSE_S", 0.2)
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_ROWS", 100)
    read_end, write_end = os.pipe()
    sender = PipeSender(write_end, capacity=1000)
    capture = SampleCapture("run-1", SVC, "Staging", sender)
    try:
        started = time.monotonic()
        for k in range(20_000):  # far more than a 64-KiB pipe takes
            _fire(capture, k)
            assert sender.queued <= 1000
        assert time.monotonic() - started < 5.0  # never blocked on the full pipe
        assert sender.dropped > 0 and sender.sent + sender.queued + sender.dropped == 20_000
        environment = _Environment()
        assert not capture.close(environment=environment)
        assert environment.process_exit_code == 3
        assert sender.sent + sender.dropped == 20_000 and sender.queued == 0
    finally:
        sender.abandon()
        os.close(read_end)


def _read(piped: Piped, rows: int, timeout_s: float = 10.0) -> bool:
    """Wait until the receiver has read ``rows`` rows from the pipe (stored or not)."""
    deadline = time.monotonic() + timeout_s
    while piped.receiver.received < rows and time.monotonic() < deadline:
        time.sleep(0.005)
    return piped.receiver.received >= rows


@pytest.mark.e2e
def test_a_gate_whose_capture_fell_behind_errors_its_checks(
    gate_dir: pytest.Pytester, sample_app: Callable[..., RunningApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real Locust, real capture, real store: another process holds the store's lock for longer
    than the capture's queue lasts."""
    monkeypatch.setenv(ENV_QUEUE, "40")
    gate_dir.makefile(".json", monspec=json.dumps(MONSPEC))
    staging, production = sample_app("Staging"), sample_app("Production")
    db = gate_dir.path / ".perfsig" / "perfsig.db"
    held = threading.Event()

    def hold() -> None:
        with locked(db):
            held.set()
            time.sleep(8.0)  # 40 samples last 2 s at 5 users and 0.2 s think time (less when busy)

    locker = when_stored(db, "Staging", 50, hold)
    result = gate_dir.runpytest_subprocess(
        "--monspec=monspec.json",
        "--stage=Staging",
        f"--perfsig-url=Staging={staging.url}",
        f"--perfsig-url=Production={production.url}",
        "--perfsig-duration=15",
        "--perfsig-users=5",
        "-rA",
    )
    locker.join()
    text = result.stdout.str()
    assert held.is_set(), text
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "passed" not in result.parseoutcomes() and result.parseoutcomes().get("errors") == 2, text
    with SqliteStore(db) as store:
        dropped = {run.env: run.dropped for run in store.runs()}
    assert dropped["Staging"] > 0, text
    assert f"capture fell behind: {sum(dropped.values())} samples dropped" in text, text
    result.stdout.fnmatch_lines(["*gate * for Staging: ERROR*"])


def test_requests_finishing_after_the_close_are_stored_at_the_next(tmp_path: Path) -> None:
    """Locust fires ``quitting`` before it stops its users: requests in flight finish after
    the capture's first close and are stored by the last one (at exit)."""
    path = tmp_path / "perfsig.db"
    piped = Piped(path, "run-1", SVC, "Staging")
    _fire(piped.capture, 0)
    assert piped.capture.close()
    _fire(piped.capture, 1)
    assert piped.close()
    with SqliteStore(path) as store:
        assert store.run_counts("run-1") == (2, 0) and piped.writer.dropped == 0


def test_a_batch_larger_than_the_queue_keeps_what_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        store.create_run(RunRecord("run-Staging", SVC, "Staging", gate_id="g"))
    writer = SampleWriter(str(path), "run-Staging", capacity=40)
    rows = [("run-Staging", T0 + k / 100, SVC, "Staging", "/x", 5.0, 1, 200) for k in range(50)]
    assert not writer.put(rows)  # not all of it: 10 dropped
    assert writer.dropped == 10
    assert writer.close()
    with SqliteStore(path) as store:
        assert store.run_counts("run-Staging") == (40, 0)
        run = store.run("run-Staging")
        assert run is not None and run.dropped == 10


def _exited_child(tmp_path: Path, log: str, read_end: int) -> runner_module._Child:
    """A Locust child of the Staging run that has exited 0, with its log and its stream."""
    child = object.__new__(runner_module._Child)
    child.spec = LoadSpec(SVC, "Staging", "http://127.0.0.1:1", "-", 1, 1, 3.0)
    child.run_id, child.exited_at = "run-Staging", None
    child.log_path, child.summary_path = tmp_path / "run.log", tmp_path / "run.open.json"
    child.log_path.write_text(log)
    child.process = subprocess.Popen(["true"])
    child.process.wait()
    child.receiver = SampleReceiver(read_end, SampleWriter(str(tmp_path / "perfsig.db"), "run-Staging", 100))
    return child


def test_a_run_whose_every_sample_was_dropped_says_so_not_that_locust_sent_nothing(tmp_path: Path) -> None:
    # Locust did send requests; the capture kept none. The message must name the capture.
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        store.create_run(RunRecord("run-Staging", SVC, "Staging", gate_id="g"))
        store.record_dropped("run-Staging", 1234)
        read_end, write_end = os.pipe()
        os.close(write_end)  # the process has exited: its stream has ended, empty
        child = _exited_child(tmp_path, "Aggregated 4438 0(0.00%)\n", read_end)
        with pytest.raises(LoadError) as raised:
            runner_module._collect(child, store)
        run = store.run("run-Staging")
    assert "capture fell behind: 1234 samples dropped, none stored (Staging run run-Staging)" in str(
        raised.value
    )
    assert "Locust sent no requests" not in str(raised.value)
    assert run is not None and run.status == "error"


def test_a_capture_that_is_not_whole_fails_a_load_locust_called_good(tmp_path: Path) -> None:
    """Locust exited 0, but its stream ended without the end mark (its last rows never came):
    the load is an error naming the capture, never a result a verdict could pass on."""
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        store.create_run(RunRecord("run-Staging", SVC, "Staging", gate_id="g"))
        read_end, write_end = os.pipe()
        sender = PipeSender(write_end, capacity=100)
        sender.put([("run-Staging", T0 + k, SVC, "Staging", "/x", 5.0, 1, 200) for k in range(5)])
        sender.abandon()  # the process ended without its end mark
        child = _exited_child(tmp_path, "", read_end)
        with pytest.raises(LoadError) as raised:
            runner_module._collect(child, store)
        run = store.run("run-Staging")
        assert store.run_counts("run-Staging") == (5, 0)  # what came is kept
    assert "capture incomplete: the capture's stream ended without its end mark after 5 samples" in str(
        raised.value
    )
    assert run is not None and run.status == "error"


def _wake_ups(thread_id: int) -> int:
    """How often the thread has gone to sleep and been woken (voluntary context switches)."""
    with open(f"/proc/self/task/{thread_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def _asleep(thread_id: int) -> int:
    """Wait until the thread sleeps and stays asleep for 50 ms; its wake-ups so far."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = _wake_ups(thread_id)
        time.sleep(0.05)
        with open(f"/proc/self/task/{thread_id}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        if state == "S" and _wake_ups(thread_id) == before:
            return before
    raise AssertionError("the writer thread never went to sleep")


def _until(done: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 30  # half the writer's safety net, patched to 60 s below
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    return done()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_an_idle_writer_sleeps_until_rows_drops_or_the_close_wake_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer shares a core with the load: it must not wake up when there is nothing to
    # store (it used to poll every 20 ms), and nothing it is given may wait for its
    # safety-net timeout (60 s here, so that a lost wake-up fails the 30-s waits).
    monkeypatch.setattr(writer_module, "IDLE_WAIT_S", 60.0)
    monkeypatch.setenv(ENV_PRIORITY, "normal")
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        store.create_run(RunRecord("run-1", SVC, "Staging", status="running"))
    writer = SampleWriter(str(path), "run-1", capacity=10_000)
    rows = [("run-1", T0 + k, SVC, "Staging", "/x", 5.0, 1, 200) for k in range(10)]
    assert writer.put(rows[:5])
    assert _until(lambda: writer.written == 5)
    woken = _asleep(writer.thread_id)
    time.sleep(1.0)  # nothing to store: a writer polling every 20 ms wakes 50 times
    assert _wake_ups(writer.thread_id) - woken <= 5
    assert writer.put(rows[5:])
    assert _until(lambda: writer.written == 10)
    _asleep(writer.thread_id)
    writer.count_dropped(3)  # samples the Locust process dropped: a count to record
    assert _until(lambda: writer.recorded == 3)
    _asleep(writer.thread_id)
    assert writer.close(30)
    assert not writer.running  # the close woke it, and it ended (not at its 60-s timeout)
    with SqliteStore(path) as store:
        assert store.run_counts("run-1") == (10, 0)
        run = store.run("run-1")
        assert run is not None and run.dropped == 3
