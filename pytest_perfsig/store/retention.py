"""Retention: ``perfsig gc`` deletes the raw samples (batches and chunks) of old runs and keeps
their gates, verdicts and per-second aggregates, so history and reports go on working; pins
keep a baseline run whole; and the store's size per raw sample.

A run is never collected while it runs, while it is pinned (``--perfsig-baseline``), while it
is the newest passed run of its service and environment (``latest_passed``), or while a kept
gate judged samples of it (its windows overlap a kept gate's verdicts, shifted windows and
stored-run baselines included): the kept gates' reports read exactly what they read before.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError
from .columns import SampleColumns
from .samples import SampleTables

AUTO_VACUUM_INCREMENTAL = 2


@dataclass(frozen=True)
class StoreUsage:
    """How big the store file is for the raw samples it holds."""

    bytes: int  # the database file and its WAL
    samples: int  # raw samples held: chunks of compacted runs, batches of the others
    runs_with_samples: int
    runs_collected: int  # runs whose raw samples were collected (aggregates kept)

    @property
    def bytes_per_sample(self) -> float | None:
        return self.bytes / self.samples if self.samples else None


@dataclass(frozen=True)
class Collection:
    """What ``collect_samples`` did (or, dry, would do)."""

    collected: list[str]  # run ids whose raw samples were deleted
    samples: int  # raw samples deleted
    kept: dict[str, list[str]] = field(default_factory=dict)  # why → old runs kept anyway
    bytes_before: int = 0
    bytes_after: int = 0
    dry_run: bool = False


class RetentionTables(SampleTables):
    """Pins, collection of old runs' raw samples, and the store's usage."""

    # ------------------------------------------------------------------ pins

    def pin_run(self, run_id: str, gate_id: str | None = None) -> None:
        """Keep a run's raw samples for good: a gate compared with it (``--perfsig-baseline``)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO pins VALUES (?, ?, ?)", (run_id, gate_id, time.time()))

    def unpin_run(self, run_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM pins WHERE run_id = ?", (run_id,)).rowcount == 1

    def pinned_runs(self) -> list[str]:
        return [str(run_id) for (run_id,) in self._query("SELECT run_id FROM pins ORDER BY pinned_at")]

    def latest_passed_runs(self) -> list[str]:
        """The newest passed run of each service and environment: a ``latest_passed`` baseline."""
        pairs = self._query("SELECT DISTINCT service, env FROM runs")
        found = [self.baseline_runs(service, env, 1, passed_only=True) for service, env in pairs]
        return [runs[0].run_id for runs in found if runs]

    # ------------------------------------------------------------------ usage

    def store_bytes(self) -> int:
        """Size of the database file and its WAL, in bytes."""
        paths = (self.path, self.path.with_name(self.path.name + "-wal"))
        return sum(p.stat().st_size for p in paths if p.exists())

    def store_usage(self) -> StoreUsage:
        ((chunked, in_chunks),) = self._query(
            "SELECT COUNT(DISTINCT run_id), COALESCE(SUM(n), 0) FROM sample_chunks"
        )
        live = self._query(
            "SELECT DISTINCT run_id FROM sample_batches "
            "WHERE run_id NOT IN (SELECT run_id FROM sample_chunks)"
        )
        in_batches = sum(self.run_counts(str(run_id))[0] for (run_id,) in live)
        ((collected,),) = self._query("SELECT COUNT(*) FROM runs WHERE samples_collected_at IS NOT NULL")
        return StoreUsage(
            self.store_bytes(), int(in_chunks) + in_batches, int(chunked) + len(live), int(collected)
        )

    # ------------------------------------------------------------------ collection

    def collect_samples(
        self,
        *,
        keep_gates: int | None = None,
        older_than_s: float | None = None,
        now: float | None = None,
        dry_run: bool = False,
    ) -> Collection:
        """Delete the raw samples of runs outside the newest ``keep_gates`` gates and/or started
        more than ``older_than_s`` ago (both, when both are given), keeping their per-second
        aggregates; then give the space back to the file system (incremental vacuum)."""
        if keep_gates is None and older_than_s is None:
            raise ValueError("say which runs are old: keep_gates, older_than_s or both")
        now = time.time() if now is None else now
        candidates = self._old_runs(keep_gates, None if older_than_s is None else now - older_than_s)
        protected = self._protected(keep_gates)
        kept = {why: sorted(set(candidates) & ids) for why, ids in protected.items()}
        kept = {why: ids for why, ids in kept.items() if ids}
        collect = [run_id for run_id in candidates if not any(run_id in ids for ids in protected.values())]
        samples = sum(self.run_counts(run_id)[0] for run_id in collect)
        before = self.store_bytes()
        if dry_run:
            return Collection(collect, samples, kept, before, before, dry_run=True)
        for run_id in collect:
            self._collect_run(run_id, now)
        if collect:
            self._vacuum()
        return Collection(collect, samples, kept, before, self.store_bytes())

    def _old_runs(self, keep_gates: int | None, before: float | None) -> list[str]:
        sql = "SELECT run_id, gate_id, started_at FROM runs "
        sql += "WHERE samples_collected_at IS NULL AND status != 'running' ORDER BY started_at"
        runs = self._query(sql)
        if keep_gates is not None:
            kept = self._newest_gates(keep_gates)
            ids = {gate_id for gate_id, _ in kept}
            oldest = min((float(started) for _, started in kept), default=float("inf"))
            runs = [r for r in runs if r[1] not in ids and float(r[2]) < oldest]
            if len(kept) < keep_gates:
                runs = [r for r in runs if r[1] is None and float(r[2]) < oldest]
        if before is not None:
            runs = [r for r in runs if float(r[2]) < before]
        return [str(r[0]) for r in runs]

    def _newest_gates(self, count: int) -> list[tuple[str, float]]:
        sql = "SELECT gate_id, started_at FROM gates ORDER BY started_at DESC, rowid DESC LIMIT ?"
        return [(str(gate_id), float(started)) for gate_id, started in self._query(sql, (max(0, count),))]

    def _protected(self, keep_gates: int | None) -> dict[str, set[str]]:
        """Runs never collected, by reason."""
        protected = {"pinned": set(self.pinned_runs()), "latest passed": set(self.latest_passed_runs())}
        gates = [gate_id for gate_id, _ in self._newest_gates(keep_gates or 0)]
        windows: list[tuple[Any, ...]] = []
        for gate_id in gates:
            windows += self._query(
                "SELECT service, json_extract(record, '$.source_env'), source_start, source_end, "
                "json_extract(record, '$.compare_env'), compare_start, compare_end "
                "FROM verdicts WHERE gate_id = ?",
                (gate_id,),
            )
        judged: set[str] = set()
        for run_id, service, env in self._query("SELECT run_id, service, env FROM runs"):
            span = self.run_window(str(run_id)) if windows else None
            if span is None:
                continue
            for v_service, source_env, s0, s1, compare_env, c0, c1 in windows:
                if v_service not in (None, service):
                    continue
                for side_env, a, b in ((source_env, s0, s1), (compare_env, c0, c1)):
                    if side_env == env and a is not None and b is not None and a <= span[1] and span[0] <= b:
                        judged.add(str(run_id))
        protected["judged by a kept gate"] = judged
        return protected

    def _collect_run(self, run_id: str, now: float) -> None:
        """Aggregates first (a run compacted by an older version has none), then the raw samples."""
        with self._transaction() as db:
            (has_seconds,) = db.execute(
                "SELECT COUNT(*) FROM sample_seconds WHERE run_id = ?", (run_id,)
            ).fetchone()
            if not has_seconds:
                self._aggregate(db, run_id)
            db.execute("DELETE FROM sample_batches WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM sample_chunks WHERE run_id = ?", (run_id,))
            db.execute("UPDATE runs SET samples_collected_at = ? WHERE run_id = ?", (now, run_id))
        self._forget_live(run_id)

    def _aggregate(self, db: sqlite3.Connection, run_id: str) -> None:
        """Per-second aggregates of a run that has none: its chunks, or its batches (a run that
        was never compacted, such as one whose pytest died during the load)."""
        import numpy as np

        for chunk in self._run_chunks(run_id):
            columns = self._chunk_columns(chunk, ("ts", "latency_ms", "success"))
            no_codes = np.zeros(chunk.n, dtype=np.int32)  # per-second aggregates span endpoints
            self._add_seconds(
                db,
                run_id,
                SampleColumns(columns["ts"], columns["latency_ms"], columns["success"], no_codes, ()),
            )

    def _vacuum(self) -> None:
        """Give freed pages back: incremental once the file allows it (the first collection
        turns it on, with one full VACUUM), then fold the WAL in and truncate it."""
        try:
            ((mode,),) = self._query("PRAGMA auto_vacuum")
            if mode != AUTO_VACUUM_INCREMENTAL:
                self._query(f"PRAGMA auto_vacuum = {AUTO_VACUUM_INCREMENTAL}")
                self._query("VACUUM")
            else:
                self._query("PRAGMA incremental_vacuum")
            self._query("PRAGMA wal_checkpoint(TRUNCATE)")
        except StoreError as exc:
            raise StoreError(f"raw samples deleted, but the file could not shrink: {exc}") from exc
