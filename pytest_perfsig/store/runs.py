"""Load runs: one row per run in ``runs`` (where the load went, how, how it ended, what its
capture dropped), written by the load runner and read by gates, baselines and reports."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from .database import Database


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
    dropped: int = 0  # samples the capture could not keep (it fell behind): the run is incomplete
    samples_collected_at: float | None = None  # raw samples deleted (``perfsig gc``); aggregates kept


_RUN_COLUMNS = ", ".join(RunRecord.__dataclass_fields__)


class RunTables(Database):
    """The ``runs`` table."""

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

    def record_dropped(self, run_id: str, dropped: int) -> None:
        """How many samples of a run the capture had to drop so far (it fell behind)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET dropped = ? WHERE run_id = ?", (dropped, run_id))

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
        """The most recent completed runs of an environment that still hold their raw samples
        and lost none, newest first. ``passed_only``: only runs whose own gate (a gate of that
        environment) passed."""
        columns = ", ".join("r." + name for name in RunRecord.__dataclass_fields__)
        sql = f"SELECT {columns} FROM runs r"
        if passed_only:
            sql += " JOIN gates g ON g.gate_id = r.gate_id AND g.stage = r.env AND g.status = 'pass'"
        sql += " WHERE r.service = ? AND r.env = ? AND r.status = 'completed'"
        sql += " AND r.dropped = 0 AND r.samples_collected_at IS NULL"
        sql += " AND (? IS NULL OR r.gate_id IS NOT ?)"
        sql += " ORDER BY r.started_at DESC LIMIT ?"
        rows = self._query(sql, (service, env, exclude_gate, exclude_gate, count))
        return [RunRecord(*row) for row in rows]
