"""The SQLite store (runs, samples, gates, verdicts, schema versions) and the Locust sample capture."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_perfsig.errors import StoreError
from pytest_perfsig.gate.status import GateOutcome
from pytest_perfsig.load import capture as capture_module
from pytest_perfsig.load.capture import SampleCapture, install_from_environment
from pytest_perfsig.load.channel import ENV_FD
from pytest_perfsig.load.receiver import SampleReceiver
from pytest_perfsig.load.writer import SampleWriter
from pytest_perfsig.registry.sqlite import SqliteRegistry
from pytest_perfsig.store import (
    DEFAULT_STORE_PATH,
    SCHEMA_VERSION,
    GateRecord,
    RunRecord,
    SqliteStore,
    migrations,
)
from pytest_perfsig.store import gates as gates_module
from pytest_perfsig.verdict import Verdict
from pytest_perfsig.windows import Window
from tests.capturing import Piped
from tests.stored import stored_rows

T0 = 1_700_000_000.0
SVC = "SampleJSonService"
V1_STORE = Path(__file__).parent / "data" / "store-v1.db"
V1_GATE = "20261128T040927-v1gate"
V1_T0 = 1_795_838_967.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / ".perfsig" / "perfsig.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db_path) as db:
        yield db


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as raw:
        return raw.execute(sql).fetchall()


# ---------------------------------------------------------------------------- opening


def test_open_creates_parent_dirs_schema_and_wal(db_path: Path, store: SqliteStore) -> None:
    assert db_path.is_file()
    assert store.path == db_path
    assert _rows(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
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
    record = RunRecord(
        run_id="run-1",
        service=SVC,
        env="Staging",
        url="http://127.0.0.1:8081",
        gate_id="gate-1",
        build="42",
        locustfile="loadtests/staging.py",
        users=10,
        spawn_rate=2.5,
        duration_s=30.0,
        load_model="closed",
        started_at=T0,
        ended_at=None,
        status="running",
        detail=None,
    )
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
    store.add_samples(
        [
            ("r1", T0 + 3.0, SVC, "Staging", "/a", 10.0, 1, 200),
            ("r1", T0 + 1.5, SVC, "Staging", "/a", 11.0, 0, 500),
            ("r1", T0 + 7.25, SVC, "Staging", "/b", 12.0, 1, 200),
            ("r1", T0 + 2.0, SVC, "Staging", "/b", 13.0, 0, 0),
            ("r1", T0 + 4.0, SVC, "Staging", "/b", 14.0, 1, 200),
            ("r2", T0 - 100.0, SVC, "Production", "/a", 1.0, 0, 503),
        ]
    )
    assert store.run_counts("r1") == (5, 2)
    assert store.run_counts("r2") == (1, 1)
    assert store.run_counts("nothing") == (0, 0)
    assert store.run_window("r1") == (T0 + 1.5, T0 + 7.25)
    assert store.run_window("r2") == (T0 - 100.0, T0 - 100.0)
    assert store.run_window("nothing") is None


def test_samples_query(store: SqliteStore) -> None:
    store.add_samples(
        [
            ("r1", T0 + 1.0, SVC, "Staging", "/a", 10.5, 1, 200),
            ("r1", T0 + 2.0, SVC, "Staging", "/b", 20.25, 0, 500),
            ("r1", T0 + 3.0, SVC, "Production", "/a", 30.0, 1, 200),
            ("r1", T0 + 4.0, "Other", "Staging", "/a", 40.0, 1, 200),
        ]
    )
    cols = store.samples(SVC, "Staging", T0, T0 + 10)
    assert len(cols) == 2
    assert sorted(cols.latency_ms.tolist()) == [10.5, 20.25]
    assert sorted(cols.endpoint) == ["/a", "/b"]
    assert cols.success.dtype == bool and sorted(cols.success.tolist()) == [False, True]
    only_b = store.samples(SVC, "Staging", T0, T0 + 10, endpoint="/b")
    assert (only_b.ts.tolist(), only_b.latency_ms.tolist(), only_b.success.tolist(), only_b.endpoint) == (
        [T0 + 2.0],
        [20.25],
        [False],
        ["/b"],
    )
    empty = store.samples(SVC, "Staging", T0 + 5, T0 + 10)
    assert len(empty) == 0 and empty.ts.size == 0 and empty.success.dtype == bool


def test_add_samples_is_atomic(db_path: Path, store: SqliteStore) -> None:
    good = ("r1", T0, SVC, "Staging", "/a", 1.0, 1, 200)
    for bad in (
        ("r1", T0, SVC, "Staging", "/a", None, 1, 200),  # no latency
        ("r1", T0, SVC, "Staging", "/a", math.nan, 1, 200),
        ("r1", None, SVC, "Staging", "/a", 1.0, 1, 200),  # no start time
    ):
        with pytest.raises(StoreError, match=r"samples of run r1 without a start time or latency"):
            store.add_samples([good, good, bad])
        assert store.run_counts("r1") == (0, 0)
    for bad in (
        ("r1", T0, SVC, "Staging", None, 1.0, 1, 200),  # no endpoint
        ("r1", T0, SVC, "Staging", "/a", 1.0, None, 200),  # no success flag: not a failure
    ):
        with pytest.raises(StoreError, match=r"samples of run r1 without an endpoint or success flag"):
            store.add_samples([good, bad])
        assert store.run_counts("r1") == (0, 0)
    # Rows of two runs are two batches, in one transaction: a bad row of one stores neither.
    with pytest.raises(StoreError, match="run r2"):
        store.add_samples([good, ("r2", T0, SVC, "Production", "/a", None, 1, 200)])
    assert store.run_counts("r1") == (0, 0)
    store.add_samples([good])  # the store is still usable after the refusal
    assert store.run_counts("r1") == (1, 0)


def test_a_batch_of_one_run_is_one_statement(db_path: Path, store: SqliteStore) -> None:
    # The capture's writer stores each batch with one call into SQLite, without BEGIN and COMMIT.
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for second in (2, 1):
        store.add_samples([("r1", T0 + second, SVC, "Staging", "/a", float(second), 1, 200)])
        assert len(statements) == 1 and statements[0].startswith("INSERT INTO sample_batches")
        statements.clear()
    # Rows of two runs: a batch each, in one transaction.
    store.add_samples(
        [
            ("r1", T0 + 3, SVC, "Staging", "/a", 3.0, 1, 200),
            ("r2", T0 + 3, SVC, "Production", "/a", 4.0, 1, 200),
        ]
    )
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    assert _rows(db_path, "SELECT run_id, seq, n FROM sample_batches ORDER BY run_id, seq") == [
        ("r1", 0, 1),
        ("r1", 1, 1),
        ("r1", 2, 1),
        ("r2", 0, 1),
    ]
    assert store.samples(SVC, "Production", T0, T0 + 10).latency_ms.tolist() == [4.0]
    with SqliteStore(db_path) as other:  # what another connection reads: in time order
        assert other.samples(SVC, "Staging", T0, T0 + 10).latency_ms.tolist() == [1.0, 2.0, 3.0]


def test_add_samples_stores_every_value_exactly(store: SqliteStore) -> None:
    # Floats come back bit for bit, odd names as written, an infinite latency too.
    rows = [
        ("r1", T0 + k / 7.0, SVC, "Staging", name, latency, ok, status)
        for k, (name, latency, ok, status) in enumerate(
            [
                ("/a", 0.1 + 0.2, 1, 200),
                ('/q?x="1"&y=\\', 1e-300, 0, 500),
                ("/ünï/☃", 12345.678901234567, 1, 0),
                ("123", 5e-324, 1, 204),
            ]
        )
    ]
    store.add_samples(list(reversed(rows)))  # in any order: a batch is sorted by time
    store.add_samples([("r1", T0 + 9, SVC, "Staging", "/slow", math.inf, 0, 0)])
    for _ in ("batches", "chunks"):
        got = store.samples(SVC, "Staging", T0, T0 + 10)
        assert list(
            zip(got.ts.tolist(), got.endpoint, got.latency_ms.tolist(), got.success.tolist(), strict=True)
        ) == [
            *((ts, name, latency, bool(ok)) for _, ts, _, _, name, latency, ok, _ in rows),
            (T0 + 9, "/slow", math.inf, False),
        ]
        store.compact_run("r1")  # the second read: from the chunks


# ---------------------------------------------------------------------------- gates and verdicts


def _verdict(status: str, message: str, **values: Any) -> Verdict:
    fields: dict[str, Any] = dict(
        status=status,
        metric="service.failurerate",
        aggregate="avg",
        method=None,
        unit="%",
        source_env="Staging",
        compare_env="Production",
        message=message,
        rule="upper: Production × 1.30 + 0.5 % abs",
        source_value=48.9,
        compare_value=0.0,
        limit=0.5,
        source_samples=1000,
        compare_samples=2000,
        source_window=Window(T0, T0 + 10.25),
        compare_window=Window(T0 - 3600, T0 - 3589.75),
        comparison="StagingToProduction",
    )
    fields.update(values)
    return Verdict(**fields)


def _outcome(status: str, counts: dict[str, int], problems: list[str]) -> GateOutcome:
    return GateOutcome(status=status, counts=counts, planned=3, selected=2, judged=2, problems=problems)


def test_gates_and_verdicts_round_trip(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1000.0, 2000.0, 2500.0])
    monkeypatch.setattr(gates_module, "time", SimpleNamespace(time=lambda: next(clock)))
    store.create_gate("g1", "monspec.json", "Staging", "build-7")  # started 1000
    store.create_gate("g2", "other.json", "Production", None)  # started 2000
    assert store.gates() == [
        GateRecord("g2", "other.json", "Production", None, 2000.0, None, "running"),
        GateRecord("g1", "monspec.json", "Staging", "build-7", 1000.0, None, "running"),
    ]
    assert [g.gate_id for g in store.gates(limit=1)] == ["g2"]
    assert store.gate("g1") == store.gates()[1] and store.gate("nope") is None

    first = _verdict("violation", "service.failurerate avg: Staging 48.9 % > limit 0.5 %")
    second = _verdict(
        "pass",
        "fine",
        metric="service.responsetime",
        aggregate="p90",
        unit="ms",
        limit=None,
        judge="mannwhitney",
        details={"test": "exact", "p_value": 0.01},
    )
    store.save_verdict("g1", "StagingToProduction::service.failurerate[avg]", SVC, first)
    store.save_verdict("g1", "StagingToProduction::service.responsetime[p90]", SVC, second)
    store.save_verdict(
        "g2",
        "x",
        None,
        _verdict(
            "error",
            "no data",
            source_window=None,
            compare_window=None,
            baseline="run Production-1",
            comparison="Other",
        ),
    )
    stored = store.verdicts("g1")
    assert [(v.gate_id, v.check_id, v.service) for v in stored] == [
        ("g1", "StagingToProduction::service.failurerate[avg]", SVC),
        ("g1", "StagingToProduction::service.responsetime[p90]", SVC),
    ]
    assert [v.verdict for v in stored] == [first, second]
    assert all(v.extras == {} for v in stored)
    (other,) = store.verdicts("g2")
    assert other.service is None and other.verdict.baseline == "run Production-1"
    assert other.verdict.source_window is None
    assert store.verdicts("nope") == []
    # The naming fields, windows and values are columns of their own.
    assert _rows(
        store.path,
        "SELECT service, comparison, metric, aggregate, method, judge, status, source_start, "
        "source_end, compare_start, compare_end, source_value, compare_value, limit_value "
        "FROM verdicts WHERE gate_id = 'g1' ORDER BY rowid",
    ) == [
        (
            SVC,
            "StagingToProduction",
            "service.failurerate",
            "avg",
            None,
            "scalefactor",
            "violation",
            T0,
            T0 + 10.25,
            T0 - 3600,
            T0 - 3589.75,
            48.9,
            0.0,
            0.5,
        ),
        (
            SVC,
            "StagingToProduction",
            "service.responsetime",
            "p90",
            None,
            "mannwhitney",
            "pass",
            T0,
            T0 + 10.25,
            T0 - 3600,
            T0 - 3589.75,
            48.9,
            0.0,
            None,
        ),
    ]

    # saving a check again replaces it
    store.save_verdict(
        "g1", "StagingToProduction::service.failurerate[avg]", SVC, replace(first, status="pass")
    )
    assert sorted(v.verdict.status for v in store.verdicts("g1")) == ["pass", "pass"]

    store.finish_gate("g1", _outcome("violation", {"violation": 1, "pass": 1}, ["too many failures"]))
    g1 = store.gate("g1")
    assert g1 is not None and (g1.status, g1.ended_at) == ("violation", 2500.0)
    assert g1.summary == {
        "counts": {"violation": 1, "pass": 1},
        "problems": ["too many failures"],
        "planned": 3,
        "selected": 2,
        "judged": 2,
    }
    assert g1.problems == ["too many failures"]


def test_odd_records_read_as_verdicts(store: SqliteStore) -> None:
    """Rows the current code does not write (other versions, hand edits) still read: missing
    keys from the columns, keys a later version added kept as extras, garbage as an error."""
    store.create_gate("g", "m.json", "Staging", None)
    with sqlite3.connect(store.path) as raw:
        raw.executemany(
            "INSERT INTO verdicts (gate_id, check_id, service, comparison, metric, aggregate, method, judge, "
            "status, record) VALUES ('g', ?, NULL, 'C', 'service.responsetime', 'avg', NULL, 'scalefactor', ?, ?)",
            [
                ("only-status", "pass", '{"status": "pass"}'),
                ("later", "violation", '{"status": "violation", "new_key": [1, 2], "source_value": NaN}'),
                ("garbage", "pass", "not json"),
            ],
        )
    only, later, garbage = store.verdicts("g")
    assert only.verdict.status == "pass" and only.verdict.metric == "service.responsetime"
    assert only.verdict.comparison == "C" and only.verdict.source_window is None
    assert later.extras == {"new_key": [1, 2]} and math.isnan(later.verdict.source_value or 0.0)
    assert garbage.verdict.status == "error" and "unreadable verdict record" in garbage.verdict.message


# ---------------------------------------------------------------------------- schema versions


def test_new_store_is_at_the_current_version(store: SqliteStore) -> None:
    assert (
        store.schema_version == SCHEMA_VERSION == len(migrations.MIGRATIONS)
    )  # one ordered step per version
    assert _rows(store.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _rows(store.path, "SELECT value FROM meta") == [(str(SCHEMA_VERSION),)]


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A copy of the store the first release wrote (see tests/data/make_store_v1.py)."""
    path = tmp_path / "store-v1.db"
    shutil.copyfile(V1_STORE, path)
    return path


def test_store_of_the_first_release_migrates(v1_store: Path) -> None:
    assert _rows(v1_store, "PRAGMA user_version") == [(0,)]
    with SqliteStore(v1_store) as store:
        assert store.schema_version == SCHEMA_VERSION
        (gate,) = store.gates()
        assert (gate.gate_id, gate.status, gate.stage, gate.build) == (V1_GATE, "violation", "Staging", "41")
        assert gate.problems and gate.problems[0].startswith("service.failurerate avg: Staging 24.4 %")
        p90, failures = store.verdicts(V1_GATE)
        runs = store.gate_runs(V1_GATE)
        assert [r.run_id for r in runs] == ["Staging-v1run", "Production-v1run"]
        assert store.run_counts("Staging-v1run") == (100, 25)
        requests = SqliteRegistry(store).recent()
    # Windows were text ("2026-11-28 04:09:28–04:09:36 UTC"): numbers now, the end widened by the
    # second the text cut off, so the window holds every sample that was judged.
    window = Window(V1_T0 + 1.0, V1_T0 + 10.0)
    for stored in (p90, failures):
        assert stored.service == SVC and stored.verdict.comparison == "StagingToProduction"
        assert stored.verdict.source_window == window == stored.verdict.compare_window
        assert stored.verdict.baseline is None and stored.extras == {}
    assert (p90.verdict.status, p90.verdict.judge, p90.verdict.details) == (
        "pass",
        "mannwhitney",
        {"judge": "mannwhitney", "test": "exact", "p_value": 0.5, "shift": 0.0},
    )
    assert (failures.verdict.status, failures.verdict.judge, failures.verdict.limit) == (
        "violation",
        "scalefactor",
        0.5,
    )
    assert _rows(
        v1_store,
        "SELECT check_id, service, comparison, metric, aggregate, judge, status, source_start, "
        "source_end, compare_start, compare_end, source_value, compare_value, limit_value "
        "FROM verdicts ORDER BY rowid",
    ) == [
        (
            "StagingToProduction::service.responsetime[p90]",
            SVC,
            "StagingToProduction",
            "service.responsetime",
            "p90",
            "mannwhitney",
            "pass",
            window.start,
            window.end,
            window.start,
            window.end,
            15.0,
            15.0,
            4.5,
        ),
        (
            "StagingToProduction::service.failurerate[avg]",
            SVC,
            "StagingToProduction",
            "service.failurerate",
            "avg",
            "scalefactor",
            "violation",
            window.start,
            window.end,
            window.start,
            window.end,
            24.44,
            0.0,
            0.5,
        ),
    ]
    # The request status of the first release, "ok", is the gate's word now.
    assert [(r.pipeline, r.status, r.attempts) for r in requests] == [("payments-main", "pass", 1)]
    assert _rows(v1_store, "SELECT status FROM validation_requests") == [("pass",)]
    assert _rows(v1_store, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_version_5_store_keeps_the_samples_of_its_runs(tmp_path: Path) -> None:
    """Version 6 stores a running load's samples as batches: the rows of a run not compacted
    (a pytest that died during its load) become batches, in time order; a compacted run's
    rows go (its chunks hold what is read); ``samples`` and ``sample_runs`` go."""
    rows = [
        ("live", T0 + k / 4, SVC, "Staging", f"/{k % 3}", 10.0 + k, int(k % 5 != 0), 200) for k in range(40)
    ]
    rows.append(("done", T0, SVC, "Production", "/", 1.0, 1, 200))
    path = tmp_path / "v5.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for version, step in enumerate(migrations.MIGRATIONS[:5]):
            step(db)
            db.execute(f"PRAGMA user_version = {version + 1}")
        db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", reversed(rows))
        db.execute("INSERT INTO sample_runs SELECT DISTINCT run_id, service, env FROM samples")
        db.execute(
            "INSERT INTO sample_chunks VALUES ('done', 0, ?, 'Production', ?, ?, 1, 0, '[\"/\"]', '[[1, 0]]', "
            "?, ?, ?, ?)",
            (SVC, T0, T0, struct.pack("<d", T0), struct.pack("<i", 0), b"\x01", struct.pack("<d", 1.0)),
        )
    with SqliteStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.run_counts("live") == (40, 8)
        got = store.samples(SVC, "Staging", T0, T0 + 100)
        assert got.ts.tolist() == [T0 + k / 4 for k in range(40)]
        assert got.latency_ms.tolist() == [10.0 + k for k in range(40)]
        assert got.endpoint == [f"/{k % 3}" for k in range(40)]
        assert store.endpoint_counts("live", skip_s=5.0) == {"/0": 7, "/1": 6, "/2": 7}  # k >= 20
        assert store.samples(SVC, "Production", T0, T0).latency_ms.tolist() == [1.0]
        assert store.compact_run("live") == 40
        assert store.samples(SVC, "Staging", T0, T0 + 100).ts.tolist() == got.ts.tolist()
    tables = {name for (name,) in _rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "sample_batches" in tables and not tables & {"samples", "sample_runs"}
    assert _rows(path, "SELECT run_id, seq, n FROM sample_batches") == [("live", 0, 40)]


def test_a_failed_migration_leaves_the_store_as_it_was(
    v1_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    structured = migrations.MIGRATIONS[1]

    def half_done(db: sqlite3.Connection) -> None:
        structured(db)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.MIGRATIONS[0], half_done))
    with pytest.raises(StoreError, match=r"^cannot open store .*store-v1\.db: disk I/O error"):
        SqliteStore(v1_store)
    assert _rows(v1_store, "PRAGMA user_version") == [(0,)]
    assert [row[1] for row in _rows(v1_store, "PRAGMA table_info(verdicts)")] == [
        "gate_id",
        "check_id",
        "record",
        "status",
    ]
    assert _rows(v1_store, "SELECT status FROM validation_requests") == [("ok",)]
    monkeypatch.undo()
    with SqliteStore(v1_store) as store:
        assert len(store.verdicts(V1_GATE)) == 2


def test_processes_opening_an_old_store_at_once_migrate_it_once(v1_store: Path) -> None:
    """The Locust processes and pytest may open the same file together: each migration runs
    under the write lock, and whoever comes second finds it done."""
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            with SqliteStore(v1_store) as store:
                assert len(store.verdicts(V1_GATE)) == 2
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _rows(v1_store, "SELECT COUNT(*) FROM verdicts") == [(2,)]


def test_a_newer_store_is_refused(db_path: Path) -> None:
    SqliteStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as refused:
        SqliteStore(db_path)
    message = str(refused.value)
    assert str(db_path) in message and f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"up to version {SCHEMA_VERSION}" in message and "upgrade pytest-perfsig" in message
    assert _rows(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]  # left alone


def test_version_1_texts_are_read_only_by_the_migration() -> None:
    assert migrations.window_from_text("2026-11-28 04:09:46–04:09:55 UTC") == {
        "start": 1795838986.0,
        "end": 1795838996.0,
    }
    over_midnight = migrations.window_from_text("2027-01-15 23:59:50–2027-01-16 00:00:10 UTC")
    assert over_midnight == {"start": 1800057590.0, "end": 1800057611.0}
    assert migrations.window_from_text("run Production-abc") is None
    assert migrations.window_from_text(None) is None
    split = migrations.split_check_id
    assert split(
        "Cmp::/api/invoke::servicemethod.responsetime[p90]", "servicemethod.responsetime", "/api/invoke", []
    ) == (None, "Cmp")
    assert split(
        "Svc::Cmp::/api/invoke::servicemethod.responsetime[p90]#2",
        "servicemethod.responsetime",
        "/api/invoke",
        ["Svc", "Other"],
    ) == ("Svc", "Cmp")
    assert split("Svc::Cmp::service.failurerate[avg]", "service.failurerate", None, []) == ("Svc", "Cmp")
    assert split("Cmp::service.failurerate[avg]", "service.failurerate", None, ["Svc"]) == ("Svc", "Cmp")
    assert split("logrules::Svc::errors", "log", None, ["Other", "Svc"]) == ("Svc", "logrules")
    assert split("no-separator", "", None, []) == (None, "")
    service, record = migrations.upgrade_verdict_record(
        "Cmp::service.responsetime[avg]",
        {
            "check_id": "x",
            "status": "pass",
            "metric": "service.responsetime",
            "aggregate": "avg",
            "source_window": "2026-11-28 04:09:46–04:09:55 UTC",
            "compare_window": "median of 2 of 2 runs: r2, r1",
            "extra_key": 1,
        },
        "pass",
        ["Svc"],
    )
    assert service == "Svc" and record["comparison"] == "Cmp" and record["judge"] == "scalefactor"
    assert record["compare_window"] is None and record["baseline"] == "median of 2 of 2 runs: r2, r1"
    assert record["extra_key"] == 1 and "check_id" not in record


# ---------------------------------------------------------------------------- the capture


@dataclass
class FakeResponse:
    status_code: int


class CatchResponseError(Exception):
    pass


def _fire(
    capture: SampleCapture,
    name: str,
    response_time: float,
    start_time: float | None,
    status: int | None,
    exception: BaseException | None = None,
) -> None:
    """What Locust's HttpSession passes to events.request.fire."""
    capture.on_request(
        request_type="GET",
        name=name,
        response_time=response_time,
        response_length=512,
        exception=exception,
        response=None if status is None else FakeResponse(status),
        context={},
        start_time=start_time,
        url=f"http://127.0.0.1:8081{name}",
    )


@pytest.fixture
def no_auto_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_S", 3600.0)


@pytest.mark.usefixtures("no_auto_flush")
def test_capture_stores_exact_latency_and_success(db_path: Path, store: SqliteStore) -> None:
    piped = Piped(store.path, "run-1", SVC, "Staging")
    capture = piped.capture
    _fire(capture, "/api/invoke", 12.3456, T0 + 0.125, 200)
    _fire(capture, "/api/invoke", 250.0000001, T0 + 0.5, 500, CatchResponseError("500 Internal Server Error"))
    _fire(capture, "/api/health", 3, T0 + 0.75, None, ConnectionRefusedError(111, "refused"))
    assert len(capture.buffer) == 3
    assert store.run_counts("run-1") == (0, 0)  # buffered, not yet written
    capture.flush(environment=object())  # Locust's test_stop / quitting pass keyword arguments
    assert capture.buffer == []
    assert piped.drain()  # through the pipe to the writer thread, which stores it
    assert capture.captured == 3 and piped.writer.written == 3
    assert stored_rows(db_path) == [
        ("run-1", T0 + 0.125, SVC, "Staging", "/api/invoke", 12.3456, 1),
        ("run-1", T0 + 0.5, SVC, "Staging", "/api/invoke", 250.0000001, 0),
        ("run-1", T0 + 0.75, SVC, "Staging", "/api/health", 3.0, 0),
    ]
    assert store.run_counts("run-1") == (3, 2)
    capture.flush()  # nothing buffered: nothing written
    assert capture.captured == 3 and store.run_counts("run-1") == (3, 2)
    assert piped.close()


@pytest.mark.usefixtures("no_auto_flush")
def test_capture_stores_a_name_that_is_a_str_subclass(db_path: Path, store: SqliteStore) -> None:
    """Locustfiles name endpoints with Enums of str: the pipe carries plain strings only."""
    import enum

    class Endpoint(str, enum.Enum):  # noqa: UP042 (the older spelling, still common)
        INVOKE = "/api/invoke"

    piped = Piped(store.path, "run-1", SVC, "Staging")
    _fire(piped.capture, Endpoint.INVOKE, 4.0, T0, 200)
    assert piped.close()
    assert stored_rows(db_path) == [("run-1", T0, SVC, "Staging", "/api/invoke", 4.0, 1)]


@pytest.mark.usefixtures("no_auto_flush")
def test_capture_without_start_time_backdates_by_the_latency(store: SqliteStore) -> None:
    capture = SampleCapture("run-1", SVC, "Staging", None)
    before = time.time()
    _fire(capture, "/x", 2000.0, None, 200)  # 2 s
    after = time.time()
    started = capture.buffer[0][1]
    assert before - 2.0 <= started <= after - 2.0


def test_capture_flushes_every_n_rows(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, no_auto_flush: None
) -> None:
    monkeypatch.setattr(capture_module, "FLUSH_EVERY_ROWS", 3)
    piped = Piped(store.path, "run-1", SVC, "Staging")
    capture = piped.capture
    for k in range(2):
        _fire(capture, "/x", 1.0, T0 + k, 200)
    assert capture.captured == 0 and store.run_counts("run-1") == (0, 0)
    _fire(capture, "/x", 1.0, T0 + 2, 200)
    assert piped.drain()
    assert store.run_counts("run-1") == (3, 0)
    assert capture.buffer == [] and capture.captured == 3
    assert piped.close()


def test_capture_flushes_after_an_interval(store: SqliteStore) -> None:
    piped = Piped(store.path, "run-1", SVC, "Staging")
    capture = piped.capture
    capture.last_flush = time.monotonic() - capture_module.FLUSH_EVERY_S - 0.01
    _fire(capture, "/x", 1.0, T0, 200)
    assert capture.captured == 1 and piped.drain()
    assert store.run_counts("run-1") == (1, 0)
    assert piped.close()


def test_second_store_on_the_same_file_sees_rows(db_path: Path, store: SqliteStore) -> None:
    """The capture's writer thread writes while the gate reads: two connections, one WAL file."""
    piped = Piped(store.path, "run-1", SVC, "Staging")
    _fire(piped.capture, "/api/invoke", 12.3456, T0, 200)
    assert piped.close()
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
    monkeypatch.delenv(ENV_FD, raising=False)
    monkeypatch.delenv(capture_module.ENV_WORKER, raising=False)
    assert install_from_environment(events) is None
    assert events.request.listeners == []

    read_end, write_end = os.pipe()  # as the runner passes it to the Locust process
    receiver = SampleReceiver(read_end, SampleWriter(str(db_path), "run-9", 100))
    monkeypatch.setenv(ENV_FD, str(write_end))
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
        assert events.quitting.listeners == [installed.close]
        events.request.listeners[0](
            request_type="GET",
            name="/",
            response_time=1.5,
            response_length=0,
            response=FakeResponse(200),
            context={},
            exception=None,
            start_time=T0,
            url="http://127.0.0.1:8082/",
        )
        assert not os.get_inheritable(write_end)  # a process the locustfile starts gets no copy
        assert ENV_FD not in os.environ
        events.quitting.listeners[0](environment=None)  # waits until the runner read the rows
        assert installed.finish()  # at exit: the end mark, and the stream ends
        assert receiver.close()
        assert stored_rows(db_path) == [("run-9", T0, SVC, "Production", "/", 1.5, 1)]
    finally:
        installed.close()
        if installed.sender is not None:
            installed.sender.abandon()


class _FakeWorker:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_message(self, msg_type: str, data: dict[str, Any]) -> None:
        self.sent.append((msg_type, data))


@pytest.mark.usefixtures("no_auto_flush")
def test_worker_sends_batches_to_the_master_which_stores_them(store: SqliteStore) -> None:
    worker = SampleCapture("remote", "remote", "remote", None)
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
    master = Piped(store.path, "run-1", SVC, "Staging")
    master.capture.on_worker_batch(environment=None, msg=msg)
    assert master.close()
    assert store.run_counts("run-1") == (1, 0) and master.capture.captured == 1


@pytest.mark.usefixtures("no_auto_flush")
def test_open_model_latency_counts_from_the_intended_send_time(store: SqliteStore) -> None:
    capture = SampleCapture("run-1", SVC, "Staging", None)
    capture.on_request(
        request_type="GET",
        name="/x",
        response_time=10.0,
        response_length=0,
        start_time=T0 + 0.25,
        context={capture_module.INTENDED: T0},
    )
    (row,) = capture.buffer
    assert row[1] == T0 and row[5] == pytest.approx(260.0)  # 250 ms late + 10 ms service time
