"""Load runs and their raw samples: one row per request while a run goes on (written by the
Locust process, WAL mode, so pytest reads progress at the same time), and column blocks once it
has finished, which is what analysis reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .database import Database

SampleRow = tuple[str, float, str, str, str, float, int, int]
"""(run_id, ts, service, env, endpoint, latency_ms, success, status_code)"""


@dataclass
class RunRecord:
    """One load run: where the load went, how, and how it ended."""

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


_RUN_COLUMNS = ", ".join(RunRecord.__dataclass_fields__)


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
            return concat_columns([])
        mask = self.endpoint_codes == self.endpoint_names.index(endpoint)
        return replace(
            self,
            ts=self.ts[mask],
            latency_ms=self.latency_ms[mask],
            success=self.success[mask],
            endpoint_codes=self.endpoint_codes[mask],
        )


def concat_columns(parts: list[SampleColumns]) -> SampleColumns:
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


class SampleTables(Database):
    """The ``runs``, ``samples`` and ``sample_blocks`` tables."""

    # ------------------------------------------------------------------ runs

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
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return RunRecord(*rows[0]) if rows else None

    def runs(self, limit: int = 50) -> list[RunRecord]:
        """The newest runs, newest first."""
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [RunRecord(*row) for row in rows]

    def gate_runs(self, gate_id: str) -> list[RunRecord]:
        """The runs a gate drove, in start order."""
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE gate_id = ? ORDER BY started_at, rowid", (gate_id,)
        )
        return [RunRecord(*row) for row in rows]

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

    # ------------------------------------------------------------------ samples

    def add_samples(self, rows: Iterable[SampleRow]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def run_counts(self, run_id: str) -> tuple[int, int]:
        """(requests, failures) stored so far for a run."""
        rows = self._query(
            "SELECT COUNT(*), COALESCE(SUM(1 - success), 0) FROM samples WHERE run_id = ?", (run_id,)
        )
        return int(rows[0][0]), int(rows[0][1])

    def endpoint_counts(self, run_id: str, skip_s: float = 0.0) -> dict[str, int]:
        """Samples stored so far per endpoint, leaving out the run's first ``skip_s`` seconds."""
        rows = self._query(
            "SELECT endpoint, COUNT(*) FROM samples WHERE run_id = ? "
            "AND ts >= (SELECT MIN(ts) FROM samples WHERE run_id = ?) + ? GROUP BY endpoint",
            (run_id, run_id, skip_s),
        )
        return {str(endpoint): int(count) for endpoint, count in rows}

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
        columns = concat_columns(parts)
        return columns.only(endpoint) if endpoint is not None else columns

    def run_samples(self, run: RunRecord) -> SampleColumns:
        """Every sample of one run."""
        window = self.run_window(run.run_id)
        if window is None:
            return concat_columns([])
        return self.samples(run.service, run.env, window[0], window[1], run_ids=[run.run_id])

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
