"""The SQLite store (runs, samples, gates, verdicts) and the Locust sample capture."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_perfsig.errors import StoreError
from pytest_perfsig.load import capture as capture_module
from pytest_perfsig.load.capture import SampleCapture, install_from_environment
from pytest_perfsig.store import DEFAULT_STORE_PATH, RunRecord, SqliteStore
from pytest_perfsig.store import sqlite as sqlite_module
from pytest_perfsig.verdict import Verdict

T0 = 1_700_000_000.0
SVC = "SampleJSonService"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / ".perfsig" / "perfsig.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db_path) as db:
        yield db


def _rows(path: Path, sql: str = "SELECT * FROM samples ORDER BY ts") -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as raw:
        return raw.execute(sql).fetchall()


# ---------------------------------------------------------------------------- opening


def test_open_creates_parent_dirs_schema_and_wal(db_path: Path, store: SqliteStore) -> None:
    assert db_path.is_file()
    assert store.path == db_path
    assert _rows(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    assert _rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert DEFAULT_STORE_PATH == ".perfsig/perfsig.db"


def test_reopen_keeps_data(db_path: Path) -> None:
    with SqliteStore(db_path) as first:
        first.create_run(RunRecord("r1", SVC, "Staging"))
    with SqliteStore(db_path) as second:
        run = second.run("r1")
        assert run is not None and run.env == "Staging"
    assert _rows(db_path, "SELECT COUNT(*) FROM meta") == [(1,)]


def test_unwritable_place_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(StoreError, match=r"^cannot open store .*not-a-dir/perfsig\.db: "):
        SqliteStore(blocker / "perfsig.db")


def test_directory_as_store_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^cannot open store "):
        SqliteStore(tmp_path)


def test_garbage_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database, just some text " * 100)
    with pytest.raises(StoreError, match=r"^cannot open store .*garbage\.db: "):
        SqliteStore(path)


# ---------------------------------------------------------------------------- runs


def test_run_record_round_trip(store: SqliteStore) -> None:
    record = RunRecord(run_id="run-1", service=SVC, env="Staging", url="http://127.0.0.1:8081",
                       gate_id="gate-1", build="42", locustfile="loadtests/staging.py", users=10,
                       spawn_rate=2.5, duration_s=30.0, load_model="closed", started_at=T0, ended_at=None,
                       status="running", detail=None)
    store.create_run(record)
    assert store.run("run-1") == record
    assert store.run("no-such-run") is None


def test_minimal_run_record_round_trip(store: SqliteStore) -> None:
    before = time.time()
    record = RunRecord("run-2", SVC, "Production")
    store.create_run(record)
    got = store.run("run-2")
    assert got == record
    assert got is not None and before <= got.started_at <= time.time()
    assert (got.status, got.load_model, got.url, got.users) == ("running", "closed", None, None)


def test_finish_run(store: SqliteStore) -> None:
    record = RunRecord("run-3", SVC, "Staging", started_at=T0)
    store.create_run(record)
    before = time.time()
    store.finish_run("run-3", "failed", "locust exited with code 1")
    got = store.run("run-3")
    assert got is not None
    assert got.ended_at is not None and before <= got.ended_at <= time.time()
    assert got == replace(record, ended_at=got.ended_at, status="failed", detail="locust exited with code 1")
    store.finish_run("run-3", "done")
    again = store.run("run-3")
    assert again is not None and (again.status, again.detail) == ("done", None)


def test_duplicate_run_id_raises_store_error(store: SqliteStore) -> None:
    store.create_run(RunRecord("run-4", SVC, "Staging"))
    with pytest.raises(StoreError, match=r"UNIQUE constraint failed: runs\.run_id"):
        store.create_run(RunRecord("run-4", SVC, "Production"))
    got = store.run("run-4")
    assert got is not None and got.env == "Staging"


def test_run_counts_and_window(store: SqliteStore) -> None:
    store.add_samples([
        ("r1", T0 + 3.0, SVC, "Staging", "/a", 10.0, 1, 200),
        ("r1", T0 + 1.5, SVC, "Staging", "/a", 11.0, 0, 500),
        ("r1", T0 + 7.25, SVC, "Staging", "/b", 12.0, 1, 200),
        ("r1", T0 + 2.0, SVC, "Staging", "/b", 13.0, 0, 0),
        ("r1", T0 + 4.0, SVC, "Staging", "/b", 14.0, 1, 200),
        ("r2", T0 - 100.0, SVC, "Production", "/a", 1.0, 0, 503),
    ])
    assert store.run_counts("r1") == (5, 2)
    assert store.run_counts("r2") == (1, 1)
    assert store.run_counts("nothing") == (0, 0)
    assert store.run_window("r1") == (T0 + 1.5, T0 + 7.25)
    assert store.run_window("r2") == (T0 - 100.0, T0 - 100.0)
    assert store.run_window("nothing") is None


def test_samples_query(store: SqliteStore) -> None:
    store.add_samples([
        ("r1", T0 + 1.0, SVC, "Staging", "/a", 10.5, 1, 200),
        ("r1", T0 + 2.0, SVC, "Staging", "/b", 20.25, 0, 500),
        ("r1", T0 + 3.0, SVC, "Production", "/a", 30.0, 1, 200),
        ("r1", T0 + 4.0, "Other", "Staging", "/a", 40.0, 1, 200),
    ])
    cols = store.samples(SVC, "Staging", T0, T0 + 10)
    assert len(cols) == 2
    assert sorted(cols.latency_ms.tolist()) == [10.5, 20.25]
    assert sorted(cols.endpoint) == ["/a", "/b"]
    assert cols.success.dtype == bool and sorted(cols.success.tolist()) == [False, True]
    only_b = store.samples(SVC, "Staging", T0, T0 + 10, endpoint="/b")
    assert (only_b.ts.tolist(), only_b.latency_ms.tolist(), only_b.success.tolist(), only_b.endpoint) == (
        [T0 + 2.0], [20.25], [False], ["/b"])
    empty = store.samples(SVC, "Staging", T0 + 5, T0 + 10)
    assert len(empty) == 0 and empty.ts.size == 0 and empty.success.dtype == bool


def test_add_samples_is_atomic(db_path: Path, store: SqliteStore) -> None:
    good = ("r1", T0, SVC, "Staging", "/a", 1.0, 1, 200)
    bad = ("r1", T0, SVC, "Staging", "/a", None, 1, 200)  # latency_ms is NOT NULL
    with pytest.raises(StoreError, match=r"NOT NULL constraint failed: samples\.latency_ms"):
        store.add_samples([good, good, bad])
    assert store.run_counts("r1") == (0, 0)
    store.add_samples([good])  # the store is still usable after the rollback
    assert store.run_counts("r1") == (1, 0)


# ---------------------------------------------------------------------------- gates and verdicts


def _verdict(status: str, message: str) -> dict[str, Any]:
    return Verdict(status=status, metric="service.failurerate", aggregate="avg", method=None,  # type: ignore[arg-type]
                   unit="%", source_env="Staging", compare_env="Production", message=message,
                   rule="upper: Production × 1.30 + 0.5 % abs", source_value=48.9, compare_value=0.0,
                   limit=0.5, source_samples=1000, compare_samples=2000,
                   source_window="2023-11-14 22:13:20–22:13:30 UTC").to_record()


def test_gates_and_verdicts_round_trip(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1000.0, 2000.0, 2500.0])
    monkeypatch.setattr(sqlite_module, "time", SimpleNamespace(time=lambda: next(clock)))
    store.create_gate("g1", "monspec.json", "Staging", "build-7")  # started 1000
    store.create_gate("g2", "other.json", "Production", None)  # started 2000
    assert store.gates() == [
        {"gate_id": "g2", "stage": "Production", "build": None, "started_at": 2000.0, "ended_at": None,
         "status": "running", "summary": None},
        {"gate_id": "g1", "stage": "Staging", "build": "build-7", "started_at": 1000.0, "ended_at": None,
         "status": "running", "summary": None},
    ]
    assert [g["gate_id"] for g in store.gates(limit=1)] == ["g2"]

    first = {"check_id": "StagingToProduction::service.failurerate[avg]",
             **_verdict("violation", "service.failurerate avg: Staging 48.9 % > limit 0.5 %")}
    second = {"check_id": "StagingToProduction::service.responsetime[p90]",
              **_verdict("pass", "fine"), "limit": None}
    store.save_verdict("g1", first["check_id"], first)
    store.save_verdict("g1", second["check_id"], second)
    store.save_verdict("g2", "x", {"status": "error", "message": "no data"})
    assert store.verdicts("g1") == [first, second]
    assert store.verdicts("g2") == [{"status": "error", "message": "no data"}]
    assert store.verdicts("nope") == []
    assert _rows(store.path, "SELECT status FROM verdicts WHERE gate_id = 'g1' ORDER BY rowid") == [
        ("violation",), ("pass",)]

    # saving a check again replaces it
    rejudged = {**first, "status": "pass"}
    store.save_verdict("g1", first["check_id"], rejudged)
    assert sorted(v["status"] for v in store.verdicts("g1")) == ["pass", "pass"]
    assert len(store.verdicts("g1")) == 2

    store.finish_gate("g1", "violation", {"counts": {"violation": 1, "pass": 1}, "load_error": None})
    g1 = next(g for g in store.gates() if g["gate_id"] == "g1")
    assert (g1["status"], g1["ended_at"]) == ("violation", 2500.0)
    assert g1["summary"] == '{"counts": {"violation": 1, "pass": 1}, "load_error": null}'


# ---------------------------------------------------------------------------- the capture


@dataclass
class FakeResponse:
    status_code: int


class CatchResponseError(Exception):
    pass


def _fire(capture: SampleCapture, name: str, response_time: float, start_time: float | None,
          status: int | None, exception: BaseException | None = None) -> None:
    """What Locust's HttpSession passes to events.request.fire."""
    capture.on_request(request_type="GET", name=name, response_time=response_time, response_length=512,
                       exception=exception, response=None if status is None else FakeResponse(status),
                       context={}, start_time=start_time, url=f"http://127.0.0.1:8081{name}")


@pytest.fixture
def no_auto_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_S", 3600.0)


@pytest.mark.usefixtures("no_auto_flush")
def test_capture_stores_exact_latency_and_success(db_path: Path, store: SqliteStore) -> None:
    capture = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    _fire(capture, "/api/invoke", 12.3456, T0 + 0.125, 200)
    _fire(capture, "/api/invoke", 250.0000001, T0 + 0.5, 500, CatchResponseError("500 Internal Server Error"))
    _fire(capture, "/api/health", 3, T0 + 0.75, None, ConnectionRefusedError(111, "refused"))
    assert len(capture.buffer) == 3
    assert store.run_counts("run-1") == (0, 0)  # buffered, not yet written
    capture.flush(environment=object())  # Locust's test_stop / quitting pass keyword arguments
    assert capture.buffer == []
    assert capture.captured == 3
    assert _rows(db_path) == [
        ("run-1", T0 + 0.125, SVC, "Staging", "/api/invoke", 12.3456, 1, 200),
        ("run-1", T0 + 0.5, SVC, "Staging", "/api/invoke", 250.0000001, 0, 500),
        ("run-1", T0 + 0.75, SVC, "Staging", "/api/health", 3.0, 0, 0),
    ]
    assert store.run_counts("run-1") == (3, 2)
    capture.flush()  # nothing buffered: nothing written
    assert capture.captured == 3 and store.run_counts("run-1") == (3, 2)


@pytest.mark.usefixtures("no_auto_flush")
def test_capture_without_start_time_backdates_by_the_latency(store: SqliteStore) -> None:
    capture = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    before = time.time()
    _fire(capture, "/x", 2000.0, None, 200)  # 2 s
    after = time.time()
    started = capture.buffer[0][1]
    assert before - 2.0 <= started <= after - 2.0


def test_capture_flushes_every_n_rows(store: SqliteStore, monkeypatch: pytest.MonkeyPatch,
                                      no_auto_flush: None) -> None:
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_ROWS", 3)
    capture = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    for k in range(2):
        _fire(capture, "/x", 1.0, T0 + k, 200)
    assert store.run_counts("run-1") == (0, 0)
    _fire(capture, "/x", 1.0, T0 + 2, 200)
    assert store.run_counts("run-1") == (3, 0)
    assert capture.buffer == [] and capture.captured == 3


def test_capture_flushes_after_an_interval(store: SqliteStore) -> None:
    capture = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    capture.last_flush = time.monotonic() - capture_module.FLUSH_EVERY_S - 0.01
    _fire(capture, "/x", 1.0, T0, 200)
    assert store.run_counts("run-1") == (1, 0)


def test_second_store_on_the_same_file_sees_rows(db_path: Path, store: SqliteStore) -> None:
    """The Locust process writes while pytest reads: two connections, one WAL file."""
    capture = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    _fire(capture, "/api/invoke", 12.3456, T0, 200)
    capture.flush()
    with SqliteStore(db_path) as reader:
        assert reader.run_counts("run-1") == (1, 0)
        cols = reader.samples(SVC, "Staging", T0 - 1, T0 + 1)
        assert cols.latency_ms.tolist() == [12.3456]
        # and the other way round, while both stay open
        reader.add_samples([("run-1", T0 + 0.5, SVC, "Staging", "/api/invoke", 7.0, 0, 500)])
        assert store.run_counts("run-1") == (2, 1)


class _Hook:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, fn: Any) -> None:
        self.listeners.append(fn)


def test_install_from_environment(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = SimpleNamespace(init=_Hook(), request=_Hook(), test_stop=_Hook(), quitting=_Hook())
    monkeypatch.delenv(capture_module.ENV_STORE, raising=False)
    assert install_from_environment(events) is None
    assert events.request.listeners == []

    monkeypatch.setenv(capture_module.ENV_STORE, str(db_path))
    monkeypatch.setenv(capture_module.ENV_RUN_ID, "run-9")
    monkeypatch.setenv(capture_module.ENV_SERVICE, SVC)
    monkeypatch.setenv(capture_module.ENV_ENV, "Production")
    installed = install_from_environment(events)
    assert installed is not None
    try:
        assert (installed.run_id, installed.service, installed.env) == ("run-9", SVC, "Production")
        assert events.request.listeners == [installed.on_request]
        assert events.init.listeners == [installed.on_init]
        assert events.test_stop.listeners == [installed.flush]
        assert events.quitting.listeners == [installed.flush]
        events.request.listeners[0](request_type="GET", name="/", response_time=1.5, response_length=0,
                                    response=FakeResponse(200), context={}, exception=None, start_time=T0,
                                    url="http://127.0.0.1:8082/")
        events.quitting.listeners[0](environment=None)
        assert _rows(db_path) == [("run-9", T0, SVC, "Production", "/", 1.5, 1, 200)]
    finally:
        installed.store.close()


class _FakeWorker:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_message(self, msg_type: str, data: dict[str, Any]) -> None:
        self.sent.append((msg_type, data))


@pytest.mark.usefixtures("no_auto_flush")
def test_worker_sends_batches_to_the_master_which_stores_them(store: SqliteStore) -> None:
    worker = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    worker.runner = _FakeWorker()
    _fire(worker, "/x", 5.5, T0, 200)
    worker.flush()
    assert store.run_counts("run-1") == (0, 0)  # a worker never writes the store itself
    ((msg_type, data),) = worker.runner.sent
    assert msg_type == capture_module.MESSAGE and len(data["rows"]) == 1

    class Msg:
        pass

    msg = Msg()
    msg.data = data  # type: ignore[attr-defined]
    master = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    master.on_worker_batch(environment=None, msg=msg)
    assert store.run_counts("run-1") == (1, 0) and master.captured == 1


@pytest.mark.usefixtures("no_auto_flush")
def test_open_model_latency_counts_from_the_intended_send_time(store: SqliteStore) -> None:
    capture = SampleCapture(str(store.path), "run-1", SVC, "Staging")
    capture.on_request(request_type="GET", name="/x", response_time=10.0, response_length=0,
                       start_time=T0 + 0.25, context={capture_module.INTENDED: T0})
    (row,) = capture.buffer
    assert row[1] == T0 and row[5] == pytest.approx(260.0)  # 250 ms late + 10 ms service time
