"""Asked to (``PERFSIG_CAPTURE_PRIORITY=idle``), the capture's writer (a thread of the runner's
process) stores samples on CPU time the load leaves idle (Linux ``SCHED_IDLE``), so that it
never preempts Locust's hub or the target for a whole transaction; a writer that falls behind, or still has rows at the close,
hands them over to a writer at normal priority. Nothing is lost either way. By default the
writer runs at normal priority."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_perfsig.load import writer as writer_module
from pytest_perfsig.load.runner import LoadSpec, run_load
from pytest_perfsig.load.writer import ENV_PRIORITY, SampleWriter
from pytest_perfsig.store import RunRecord, SqliteStore
from pytest_perfsig.store.samples import SampleRow
from sample_app.launcher import RunningApp
from tests.locking import locked

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0


def _idle_priority_allowed() -> bool:
    """Whether a thread may take idle priority here (Linux; a sandbox may forbid it)."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    allowed: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            allowed.append(True)
        except OSError:
            allowed.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return allowed == [True]


pytestmark = pytest.mark.skipif(not _idle_priority_allowed(), reason="no SCHED_IDLE for threads here")


def rows(first: int, count: int) -> list[SampleRow]:
    return [("run-1", T0 + k / 100, "Svc", "Staging", "/x", 5.0, 1, 200) for k in range(first, first + count)]


def policy_of(thread_id: int) -> int:
    return os.sched_getscheduler(thread_id)  # Linux: a thread id names the thread


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERFSIG_STORE_TIMEOUT", "0.1")  # a locked store fails a write quickly
    monkeypatch.setenv(ENV_PRIORITY, "idle")
    path = tmp_path / "perfsig.db"
    with SqliteStore(path) as store:
        store.create_run(RunRecord("run-1", "Svc", "Staging", gate_id="g"))
    return path


def stored(path: Path) -> int:
    with SqliteStore(path) as store:
        return store.run_counts("run-1")[0]


def test_the_writer_stores_at_idle_priority(store_path: Path) -> None:
    writer = SampleWriter(str(store_path), "run-1", capacity=100)
    assert writer.put(rows(0, 10))
    wait_for(lambda: writer.written == 10)
    assert writer.idle and policy_of(writer.thread_id) == os.SCHED_IDLE
    assert writer.close() and writer.handovers == 0
    assert stored(store_path) == 10


def test_normal_priority_by_default(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PRIORITY)
    writer = SampleWriter(str(store_path), "run-1", capacity=100)
    assert writer.put(rows(0, 10))
    wait_for(lambda: writer.written == 10)
    assert not writer.idle and policy_of(writer.thread_id) == os.SCHED_OTHER
    assert writer.close()


def test_a_writer_that_falls_behind_hands_over_to_normal_priority(store_path: Path) -> None:
    writer = SampleWriter(str(store_path), "run-1", capacity=100)  # hands over above 25 queued
    with locked(store_path):
        assert writer.put(rows(0, 10))
        wait_for(lambda: writer.thread_id != 0)
        idle_thread = writer.thread_id
        assert writer.idle and policy_of(idle_thread) == os.SCHED_IDLE
        wait_for(lambda: writer.failed_writes > 0)  # it holds the 10 rows and retries
        assert writer.put(rows(10, 30))  # 40 queued: behind
        wait_for(lambda: writer.handovers == 1 and not writer.running)  # it left its rows
        assert writer.put(rows(40, 5))  # the receiver's next batch starts the next writer
        wait_for(lambda: writer.thread_id != idle_thread)
        assert not writer.idle and policy_of(writer.thread_id) == os.SCHED_OTHER
    assert writer.close()
    assert writer.dropped == 0 and writer.written == 45  # with the rows the idle writer held
    assert stored(store_path) == 45


def test_a_writer_whose_rows_wait_too_long_hands_over(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few rows, far below a quarter of the queue, but not stored for longer than the gate
    # should wait to see them (here the store is locked; on a busy machine, the CPU).
    monkeypatch.setattr(writer_module, "HANDOVER_LAG_S", 0.5)
    writer = SampleWriter(str(store_path), "run-1", capacity=100_000)
    with locked(store_path):
        queued = time.monotonic()
        assert writer.put(rows(0, 10))
        wait_for(lambda: writer.handovers == 1 and not writer.running)
        assert time.monotonic() - queued >= 0.5  # not before the rows had waited that long
        idle_thread = writer.thread_id
        assert writer.put(rows(10, 1))  # the receiver's next batch starts the next writer
        wait_for(lambda: writer.thread_id != idle_thread)  # (it sets ``idle`` first)
        assert not writer.idle and policy_of(writer.thread_id) == os.SCHED_OTHER
    assert writer.close() and writer.written == 11 and stored(store_path) == 11


def test_rows_left_at_the_close_go_to_a_normal_priority_writer(store_path: Path) -> None:
    writer = SampleWriter(str(store_path), "run-1", capacity=100)
    closed: list[bool] = []
    with locked(store_path):
        assert writer.put(rows(0, 10))  # below the hand-over mark
        wait_for(lambda: writer.failed_writes > 0)
        assert writer.idle and writer.handovers == 0
        idle_thread = writer.thread_id
        closing = threading.Thread(target=lambda: closed.append(writer.close(timeout_s=60)))
        closing.start()
        wait_for(lambda: writer.handovers == 1 and writer.thread_id != idle_thread)
        assert not writer.idle and policy_of(writer.thread_id) == os.SCHED_OTHER
    closing.join()
    assert closed == [True] and stored(store_path) == 10


def _writer_policies() -> set[int]:
    """Scheduling policies of this process's capture writer threads (the runner's own)."""
    found: set[int] = set()
    for thread in threading.enumerate():
        if thread.name == "perfsig-writer" and thread.native_id is not None:
            try:
                found.add(policy_of(thread.native_id))
            except OSError:
                continue  # gone meanwhile
    return found


@pytest.mark.e2e
def test_the_runner_stores_a_locust_load_at_idle_priority(
    tmp_path: Path, sample_app: Callable[..., RunningApp]
) -> None:
    """Asked in the load's own environment, as the plugin passes it (``extra_env``)."""
    app = sample_app("Staging")
    policies: set[int] = set()

    def look(elapsed: float, duration: float, runs: list[tuple[LoadSpec, int, int]]) -> None:
        # From the first batch on, whether or not a starved idle writer has stored any yet.
        policies.update(_writer_policies())

    spec = LoadSpec(
        service="Svc",
        env="Staging",
        url=app.url,
        locustfile=str(ROOT / "loadtests" / "staging.py"),
        users=3,
        spawn_rate=3,
        duration_s=3,
        extra_env={"PERFSIG_THINK_S": "0.1", ENV_PRIORITY: "idle"},
    )
    assert os.environ.get(ENV_PRIORITY) is None
    with SqliteStore(tmp_path / "s.db") as store:
        (result,) = run_load([spec], store, progress=look, progress_every_s=0.3)
    assert result.requests > 0
    assert os.SCHED_IDLE in policies  # the writer (on a busy machine it may hand over later)
