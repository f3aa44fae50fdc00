"""The embedded store: one SQLite file with load runs, raw samples, gates and verdicts.

Samples are written by the Locust process while load runs (WAL mode, so the pytest process
can read progress at the same time), so nothing measured is lost if the gate errors later.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StoreError

if TYPE_CHECKING:  # the Locust process imports the store; it needs no monspec models
    from ..verdict import Verdict

SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_S = 30.0  # how long a write waits for a lock held by another process

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    gate_id TEXT,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    url TEXT,
    build TEXT,
    locustfile TEXT,
    users INTEGER,
    spawn_rate REAL,
    duration_s REAL,
    load_model TEXT NOT NULL DEFAULT 'closed',
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    success INTEGER NOT NULL,
    status_code INTEGER NOT NULL
);
-- Covering the window queries' filter (run_id: rows of runs not yet compacted into blocks).
CREATE INDEX IF NOT EXISTS samples_by_window_run ON samples (service, env, ts, run_id);
-- A finished run's samples, column by column (little-endian float64 / uint8 / int32 arrays):
-- what analysis reads, so a gate over a million samples does not build a million rows.
CREATE TABLE IF NOT EXISTS sample_blocks (
    run_id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    t_min REAL NOT NULL,
    t_max REAL NOT NULL,
    n INTEGER NOT NULL,
    ts BLOB NOT NULL,
    latency_ms BLOB NOT NULL,
    success BLOB NOT NULL,
    endpoint_codes BLOB NOT NULL,
    endpoint_names TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sample_blocks_by_window ON sample_blocks (service, env, t_min, t_max);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples (run_id);
CREATE TABLE IF NOT EXISTS gates (
    gate_id TEXT PRIMARY KEY,
    monspec TEXT NOT NULL,
    stage TEXT NOT NULL,
    build TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS validation_requests (
    pipeline TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    comparison TEXT NOT NULL,
    minutes REAL NOT NULL,
    approval_action TEXT,
    stage TEXT,
    action TEXT,
    monspec TEXT NOT NULL,
    status TEXT NOT NULL,
    ready_at REAL NOT NULL,
    results TEXT,
    reason TEXT,
    worker TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    gate_id TEXT,
    PRIMARY KEY (pipeline, timestamp_ms)
);
CREATE INDEX IF NOT EXISTS validation_requests_due ON validation_requests (status, ready_at);
CREATE TABLE IF NOT EXISTS deployment_events (
    event_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    env TEXT NOT NULL,
    pipeline TEXT,
    stage TEXT,
    application TEXT,
    deployment_group TEXT,
    deployment_id TEXT,
    revision TEXT,
    remediation_url TEXT
);
CREATE INDEX IF NOT EXISTS deployment_events_by_env ON deployment_events (env, ts);
CREATE TABLE IF NOT EXISTS remediation_events (
    problem_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    env TEXT,
    status TEXT NOT NULL,
    action TEXT,
    deployment_event_id TEXT,
    new_deployment_id TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS verdicts (
    gate_id TEXT NOT NULL,
    check_id TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (gate_id, check_id)
);
"""


class GateOutcomeLike(Protocol):
    """What the store keeps of a gate's outcome (``gate.status.GateOutcome``)."""

    @property
    def status(self) -> str: ...
    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def problems(self) -> list[str]: ...
    @property
    def planned(self) -> int: ...
    @property
    def selected(self) -> int: ...
    @property
    def judged(self) -> int: ...


SampleRow = tuple[str, float, str, str, str, float, int, int]
"""(run_id, ts, service, env, endpoint, latency_ms, success, status_code)"""


@dataclass
class RunRecord:
    run_id: str
    service: str
    env: str
    url: str | None = None
    gate_id: str | None = None
    build: str | None = None
    locustfile: str | None = None
    users: int | None = None
    spawn_rate: float | None = None
    duration_s: float | None = None
    load_model: str = "closed"
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    status: str = "running"
    detail: str | None = None


@dataclass
class DeploymentEvent:
    """A deployment into an environment, as the pipeline reported it (CUSTOM_DEPLOYMENT)."""

    env: str
    deployment_id: str | None = None
    application: str | None = None
    deployment_group: str | None = None
    revision: dict[str, Any] | None = None
    pipeline: str | None = None
    stage: str | None = None
    remediation_url: str | None = None
    ts: float = field(default_factory=time.time)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class SampleColumns:
    """The samples of one window, column by column (numpy arrays); endpoints as codes into
    ``endpoint_names`` so that filtering a million samples by endpoint stays cheap."""

    ts: Any
    latency_ms: Any
    success: Any
    endpoint_codes: Any
    endpoint_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def endpoint(self) -> list[str]:
        return [self.endpoint_names[code] for code in self.endpoint_codes.tolist()]

    def only(self, endpoint: str) -> SampleColumns:
        if endpoint not in self.endpoint_names:
            return _concat([])
        mask = self.endpoint_codes == self.endpoint_names.index(endpoint)
        return replace(
            self,
            ts=self.ts[mask],
            latency_ms=self.latency_ms[mask],
            success=self.success[mask],
            endpoint_codes=self.endpoint_codes[mask],
        )


def _concat(parts: list[SampleColumns]) -> SampleColumns:
    """One SampleColumns from several, sorted by time, with one endpoint table."""
    import numpy as np

    names: dict[str, int] = {}
    ts, latency, success, codes = [], [], [], []
    for part in parts:
        remap = np.array(
            [names.setdefault(name, len(names)) for name in part.endpoint_names] or [0], dtype=np.int32
        )
        ts.append(part.ts)
        latency.append(part.latency_ms)
        success.append(part.success)
        codes.append(remap[part.endpoint_codes] if part.endpoint_codes.size else part.endpoint_codes)
    if not parts or not any(t.size for t in ts):
        empty = np.empty(0)
        return SampleColumns(empty, empty, empty.astype(bool), empty.astype(np.int32), ())
    all_ts = np.concatenate(ts)
    order = np.argsort(all_ts, kind="stable")
    return SampleColumns(
        all_ts[order],
        np.concatenate(latency)[order],
        np.concatenate(success)[order],
        np.concatenate(codes).astype(np.int32)[order],
        tuple(names),
    )


class SqliteStore:
    """Runs, samples, gates and verdicts in one SQLite file."""

    def __init__(self, path: str | Path, timeout_s: float | None = None) -> None:
        if timeout_s is None:
            timeout_s = float(os.environ.get("PERFSIG_STORE_TIMEOUT", DEFAULT_TIMEOUT_S))
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A long busy timeout: the Locust processes write while pytest reads.
            self._db = sqlite3.connect(
                self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc

    def leave_checkpoints_to_others(self) -> None:
        """No automatic WAL checkpoint on this connection: the Locust process must not stall
        its users for one (tens of ms); the pytest process checkpoints while it waits."""
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """Fold the WAL into the database without waiting for writers (best effort)."""
        with contextlib.suppress(sqlite3.Error):  # a busy store is checkpointed next time
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    # ------------------------------------------------------------------ runs and samples

    def create_run(self, run: RunRecord) -> None:
        row = asdict(run)
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )

    def finish_run(self, run_id: str, status: str, detail: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET ended_at = ?, status = ?, detail = ? WHERE run_id = ?",
                (time.time(), status, detail, run_id),
            )

    def run(self, run_id: str) -> RunRecord | None:
        rows = self._query(
            f"SELECT {', '.join(RunRecord.__dataclass_fields__)} FROM runs WHERE run_id = ?", (run_id,)
        )
        return RunRecord(*rows[0]) if rows else None

    def add_samples(self, rows: Iterable[SampleRow]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def run_counts(self, run_id: str) -> tuple[int, int]:
        """(requests, failures) stored so far for a run."""
        rows = self._query(
            "SELECT COUNT(*), COALESCE(SUM(1 - success), 0) FROM samples WHERE run_id = ?", (run_id,)
        )
        return int(rows[0][0]), int(rows[0][1])

    def run_window(self, run_id: str) -> tuple[float, float] | None:
        """First and last request start time of a run."""
        rows = self._query("SELECT MIN(ts), MAX(ts) FROM samples WHERE run_id = ?", (run_id,))
        first, last = rows[0]
        return None if first is None else (float(first), float(last))

    def samples(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> SampleColumns:
        """Every sample of a service in an environment whose request started in [start, end],
        optionally only those of some runs: compacted blocks plus rows of runs not compacted."""
        import numpy as np

        where = "service = ? AND env = ?"
        params: list[Any] = [service, env]
        runs_filter = ""
        if run_ids is not None:
            runs_filter = f" AND run_id IN ({', '.join('?' * len(run_ids))})"
        parts: list[SampleColumns] = []
        blocks = self._query(
            "SELECT ts, latency_ms, success, endpoint_codes, endpoint_names FROM sample_blocks "
            f"WHERE {where} AND t_max >= ? AND t_min <= ?{runs_filter}",
            [*params, start, end, *(run_ids or [])],
        )
        for ts_blob, latency_blob, success_blob, codes_blob, names in blocks:
            ts = np.frombuffer(ts_blob, dtype="<f8")
            mask = (ts >= start) & (ts <= end)
            parts.append(
                SampleColumns(
                    ts[mask],
                    np.frombuffer(latency_blob, dtype="<f8")[mask],
                    np.frombuffer(success_blob, dtype=np.uint8)[mask].astype(bool),
                    np.frombuffer(codes_blob, dtype="<i4")[mask],
                    tuple(json.loads(names)),
                )
            )
        rows = self._query(
            f"SELECT ts, latency_ms, success, endpoint FROM samples WHERE {where} AND ts >= ? AND ts <= ?"
            f"{runs_filter} AND run_id NOT IN (SELECT run_id FROM sample_blocks WHERE {where})",
            [*params, start, end, *(run_ids or []), *params],
        )
        if rows:
            ts_rows, latency_rows, success_rows, endpoint_rows = zip(*rows, strict=True)
            names_seen = tuple(dict.fromkeys(endpoint_rows))
            codes = np.array([names_seen.index(e) for e in endpoint_rows], dtype=np.int32)
            parts.append(
                SampleColumns(
                    np.asarray(ts_rows, dtype=float),
                    np.asarray(latency_rows, dtype=float),
                    np.asarray(success_rows, dtype=bool),
                    codes,
                    names_seen,
                )
            )
        columns = _concat(parts)
        return columns.only(endpoint) if endpoint is not None else columns

    def compact_run(self, run_id: str) -> int:
        """Store a finished run's samples as column blocks (the rows stay); returns how many."""
        import numpy as np

        rows = self._query(
            "SELECT ts, latency_ms, success, endpoint, service, env FROM samples "
            "WHERE run_id = ? ORDER BY ts",
            (run_id,),
        )
        if not rows:
            return 0
        ts, latency, success, endpoints, services, envs = zip(*rows, strict=True)
        names = tuple(dict.fromkeys(endpoints))
        index = {name: code for code, name in enumerate(names)}
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO sample_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    services[0],
                    envs[0],
                    ts[0],
                    ts[-1],
                    len(rows),
                    np.asarray(ts, dtype="<f8").tobytes(),
                    np.asarray(latency, dtype="<f8").tobytes(),
                    np.asarray(success, dtype=np.uint8).tobytes(),
                    np.asarray([index[e] for e in endpoints], dtype="<i4").tobytes(),
                    json.dumps(names),
                ),
            )
        return len(rows)

    def baseline_runs(
        self, service: str, env: str, count: int, *, passed_only: bool, exclude_gate: str | None = None
    ) -> list[RunRecord]:
        """The most recent completed runs of an environment, newest first. ``passed_only``:
        only runs whose own gate (a gate of that environment) passed."""
        columns = ", ".join("r." + name for name in RunRecord.__dataclass_fields__)
        sql = f"SELECT {columns} FROM runs r"
        if passed_only:
            sql += " JOIN gates g ON g.gate_id = r.gate_id AND g.stage = r.env AND g.status = 'pass'"
        sql += " WHERE r.service = ? AND r.env = ? AND r.status = 'completed'"
        sql += " AND (? IS NULL OR r.gate_id IS NOT ?)"
        sql += " ORDER BY r.started_at DESC LIMIT ?"
        rows = self._query(sql, (service, env, exclude_gate, exclude_gate, count))
        return [RunRecord(*row) for row in rows]

    def runs(self, limit: int = 50) -> list[RunRecord]:
        columns = ", ".join(RunRecord.__dataclass_fields__)
        rows = self._query(f"SELECT {columns} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [RunRecord(*row) for row in rows]

    # ------------------------------------------------------------------ gates and verdicts

    def create_gate(self, gate_id: str, monspec: str, stage: str, build: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO gates (gate_id, monspec, stage, build, started_at, status) "
                "VALUES (?, ?, ?, ?, ?, 'running')",
                (gate_id, monspec, stage, build, time.time()),
            )

    def finish_gate(self, gate_id: str, outcome: GateOutcomeLike) -> None:
        summary = {
            "counts": outcome.counts,
            "problems": outcome.problems or None,
            "planned": outcome.planned,
            "selected": outcome.selected,
            "judged": outcome.judged,
        }
        with self._transaction() as db:
            db.execute(
                "UPDATE gates SET ended_at = ?, status = ?, summary = ? WHERE gate_id = ?",
                (time.time(), outcome.status, json.dumps(summary), gate_id),
            )

    def save_verdict(self, gate_id: str, check_id: str, service: str, verdict: Verdict) -> None:
        record = {"check_id": check_id, "service": service, **verdict.to_record()}
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                (gate_id, check_id, json.dumps(record), record["status"]),
            )

    def add_deployment_event(self, event: DeploymentEvent) -> None:
        row = asdict(event)
        row["revision"] = json.dumps(event.revision) if event.revision is not None else None
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO deployment_events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )

    def deployment_events(self, env: str | None = None, limit: int = 20) -> list[DeploymentEvent]:
        """Newest first."""
        columns = ", ".join(DeploymentEvent.__dataclass_fields__)
        where, params = ("WHERE env = ?", (env, limit)) if env else ("", (limit,))
        rows = self._query(
            f"SELECT {columns} FROM deployment_events {where} ORDER BY ts DESC LIMIT ?", params
        )
        events = [DeploymentEvent(*row) for row in rows]
        for event in events:
            if isinstance(event.revision, str):
                event.revision = json.loads(event.revision)
        return events

    def claim_remediation(self, problem_id: str, env: str | None) -> bool:
        """Record that a problem is being remediated; False when it was already (idempotency:
        the same problem notified twice must not roll back twice)."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO remediation_events (problem_id, ts, env, status) "
                "VALUES (?, ?, ?, 'started')",
                (problem_id, time.time(), env),
            )
            return cursor.rowcount == 1

    def finish_remediation(
        self,
        problem_id: str,
        status: str,
        *,
        action: str | None = None,
        deployment_event_id: str | None = None,
        new_deployment_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE remediation_events SET status = ?, action = ?, deployment_event_id = ?, "
                "new_deployment_id = ?, detail = ? WHERE problem_id = ?",
                (status, action, deployment_event_id, new_deployment_id, detail, problem_id),
            )

    def remediations(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        keys = (
            "problem_id",
            "ts",
            "env",
            "status",
            "action",
            "deployment_event_id",
            "new_deployment_id",
            "detail",
        )
        rows = self._query(
            f"SELECT {', '.join(keys)} FROM remediation_events ORDER BY ts DESC LIMIT ?", (limit,)
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def gates(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT gate_id, stage, build, started_at, ended_at, status, summary FROM gates "
            "ORDER BY started_at DESC LIMIT ?",
            (limit,),
        )
        keys = ("gate_id", "stage", "build", "started_at", "ended_at", "status", "summary")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def verdicts(self, gate_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT record FROM verdicts WHERE gate_id = ? ORDER BY rowid", (gate_id,))
        return [json.loads(row[0]) for row in rows]
