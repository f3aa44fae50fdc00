"""The raw samples of load runs (``runs``), as column chunks: while a run goes on, one batch per
write of the capture (``sample_batches``, sorted by time within itself; WAL mode, so pytest reads
progress at the same time), and once it has finished, chunks of at most CHUNK_SAMPLES in time
order (``sample_chunks``), which is what analysis of finished runs reads.

Both tables have the same columns, and every read goes through one listing of both (a run's
batches count until its chunks exist): reads stream chunk by chunk and load only the columns a
question needs, so a latency read holds the latencies of its window, a count holds one number per
time bin, and judging a long run needs no more memory than its largest window's values.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import StoreError
from .columns import (
    CHUNK_SAMPLES,
    ChunkInfo,
    SampleColumns,
    SecondRow,
    bin_counts,
    chunk_values,
    concat_columns,
    decode,
    seconds_of,
    single_bin,
    sorted_columns,
    window_slice,
)
from .runs import RunRecord, RunTables

SampleRow = tuple[str, float, str, str, str, float, int, int]
"""(run_id, ts, service, env, endpoint, latency_ms, success, status_code): one request as the
capture sends it (the status code is not stored)."""


__all__ = ["SampleColumns", "SampleRow", "SampleTables", "SecondRow", "concat_columns"]

CHUNK_TABLES = ("sample_chunks", "sample_batches")
"""Where a chunk lives: a finished run's chunks, a running one's batches (``ChunkInfo.live``)."""
_CHUNK_FIELDS = "run_id, seq, t_min, t_max, n, failures, endpoint_names, endpoint_counts"
_ADD_BATCH = (
    "INSERT INTO sample_batches (run_id, seq, service, env, t_min, t_max, n, failures, endpoint_names, "
    "endpoint_counts, ts, endpoint_codes, success, latency_ms) VALUES (?, "
    "(SELECT COALESCE(MAX(seq) + 1, 0) FROM sample_batches WHERE run_id = ?), "
    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BATCH_FIELDS = (
    "t_min",
    "t_max",
    "n",
    "failures",
    "endpoint_names",
    "endpoint_counts",
    "ts",
    "endpoint_codes",
    "success",
    "latency_ms",
)


class SampleTables(RunTables):
    """The ``sample_batches``, ``sample_chunks`` and ``sample_seconds`` tables (and, from
    :class:`RunTables`, the ``runs`` they belong to)."""

    # ------------------------------------------------------------------ batches and counts

    def add_samples(self, rows: Iterable[SampleRow]) -> None:
        """Store rows as one batch per run (at most CHUNK_SAMPLES each), its columns sorted by
        time: one statement, numbered after the run's last batch by the insert itself, so
        writers never need to know each other. All or nothing: a row without a start time, a
        latency (None, NaN), an endpoint or a success flag (None) refuses the whole call."""
        import numpy as np

        runs: dict[tuple[str, str, str], list[SampleRow]] = {}
        for row in rows:
            runs.setdefault((row[0], row[2], row[3]), []).append(row)
        batches = []
        for (run_id, service, env), run_rows in runs.items():
            for at in range(0, len(run_rows), CHUNK_SAMPLES):
                _, ts, _, _, endpoints, latency, success, _ = zip(
                    *run_rows[at : at + CHUNK_SAMPLES], strict=True
                )
                if None in endpoints or None in success:
                    raise StoreError(
                        f"store {self.path}: samples of run {run_id} without an endpoint or success "
                        "flag (None): none of these samples were stored"
                    )
                columns = sorted_columns(ts, latency, success, endpoints)
                if np.isnan(columns.latency_ms).any() or not np.isfinite(columns.ts).all():
                    raise StoreError(
                        f"store {self.path}: samples of run {run_id} without a start time or latency "
                        "(None or NaN): none of these samples were stored"
                    )
                values = chunk_values(columns)
                batches.append((run_id, run_id, service, env, *(values[name] for name in _BATCH_FIELDS)))
        if len(batches) == 1:  # what a capture writes: one statement, no BEGIN and COMMIT around it
            self._statement(_ADD_BATCH, batches[0])
            return
        with self._transaction() as db:
            db.executemany(_ADD_BATCH, batches)

    def run_counts(self, run_id: str) -> tuple[int, int]:
        """(requests, failures) stored so far for a run: from its chunks once compacted, its
        per-second aggregates once its raw samples are collected, its batches while it runs."""
        for table, requests in (("sample_chunks", "n"), ("sample_seconds", "requests")):
            (found, total, failed), *_ = self._query(
                f"SELECT COUNT(*), COALESCE(SUM({requests}), 0), COALESCE(SUM(failures), 0) "
                f"FROM {table} WHERE run_id = ?",
                (run_id,),
            )
            if found:
                return int(total), int(failed)
        return self._live_counts(run_id)

    def _live_counts(self, run_id: str) -> tuple[int, int]:
        # Batches only ever get larger numbers while a run is written, so each call adds the
        # batches stored since the last one: progress stays cheap over an hour-long run.
        live: dict[str, tuple[int, int, int]] = self.__dict__.setdefault("_live", {})
        seen, total, failed = live.get(run_id, (-1, 0, 0))
        ((top, added, added_failed),) = self._query(
            "SELECT MAX(seq), COALESCE(SUM(n), 0), COALESCE(SUM(failures), 0) FROM sample_batches "
            "WHERE run_id = ? AND seq > ?",
            (run_id, seen),
        )
        if top is not None:
            live[run_id] = (int(top), total + int(added), failed + int(added_failed))
        return live.get(run_id, (seen, total, failed))[1:]

    def _forget_live(self, run_id: str) -> None:
        """Forget what this connection keeps about a run whose batches were compacted or collected."""
        self.__dict__.get("_live", {}).pop(run_id, None)

    def endpoint_counts(self, run_id: str, skip_s: float = 0.0) -> dict[str, int]:
        """Samples stored so far per endpoint, leaving out the run's first ``skip_s`` seconds."""
        import numpy as np

        chunks = self._run_chunks(run_id)
        if not chunks:
            return {}
        cutoff = min(chunk.t_min for chunk in chunks) + skip_s
        counts: dict[str, int] = {}
        for chunk in chunks:
            if chunk.t_max < cutoff:
                continue
            if chunk.t_min >= cutoff:
                per_name = [int(requests) for requests, _ in chunk.counts]
            else:
                columns = self._chunk_columns(chunk, ("ts", "endpoint_codes"))
                kept = columns["endpoint_codes"][columns["ts"] >= cutoff]
                per_name = np.bincount(kept, minlength=len(chunk.names)).tolist()
            for name, count in zip(chunk.names, per_name, strict=True):
                counts[name] = counts.get(name, 0) + int(count)
        return {name: count for name, count in counts.items() if count}

    def run_window(self, run_id: str) -> tuple[float, float] | None:
        """First and last request start time of a run."""
        for sql in (
            "SELECT MIN(t_min), MAX(t_max) FROM sample_chunks WHERE run_id = ?",
            "SELECT MIN(ts_min), MAX(ts_max) FROM sample_seconds WHERE run_id = ?",
            "SELECT MIN(t_min), MAX(t_max) FROM sample_batches WHERE run_id = ?",
        ):
            ((first, last),) = self._query(sql, (run_id,))
            if first is not None:
                return float(first), float(last)
        return None

    # ------------------------------------------------------------------ reading windows

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
        optionally only those of some runs, every column (reports; judging reads less)."""
        import numpy as np

        parts = []
        for chunk in self._chunks(service, env, start, end, run_ids, endpoint):
            columns = self._chunk_columns(chunk, ("ts", "latency_ms", "success", "endpoint_codes"))
            cut = window_slice(columns["ts"], start, end)
            parts.append(
                SampleColumns(
                    columns["ts"][cut],
                    columns["latency_ms"][cut],
                    columns["success"][cut],
                    columns["endpoint_codes"][cut],
                    chunk.names,
                )
            )
        found = concat_columns(parts)
        if endpoint is not None and found.endpoint_names not in ((), (endpoint,)):
            found = found.only(endpoint)
        if len(found) == 0:
            empty = np.empty(0)
            return SampleColumns(empty, empty, empty.astype(bool), empty.astype(np.int32), ())
        return found

    def run_samples(self, run: RunRecord) -> SampleColumns:
        """Every sample of one run."""
        window = self.run_window(run.run_id)
        if window is None:
            return concat_columns([])
        return self.samples(run.service, run.env, window[0], window[1], run_ids=[run.run_id])

    def latencies(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> Any:
        """The latencies (ms, float64) of the samples in [start, end], of one endpoint or all:
        read chunk by chunk into one array, no other column kept."""
        import numpy as np

        chunks = list(self._chunks(service, env, start, end, run_ids, endpoint))
        out = np.empty(sum(chunk.totals(endpoint)[0] for chunk in chunks))
        filled = 0
        for chunk in chunks:
            wanted = ["latency_ms"]
            if not chunk.inside(start, end):
                wanted.append("ts")
            if chunk.mixed(endpoint):
                wanted.append("endpoint_codes")
            columns = self._chunk_columns(chunk, wanted)
            cut = window_slice(columns.get("ts"), start, end)
            values = columns["latency_ms"][cut]
            if chunk.mixed(endpoint):
                values = values[columns["endpoint_codes"][cut] == chunk.names.index(str(endpoint))]
            out[filled : filled + values.size] = values
            filled += values.size
        return out[:filled]

    def counts(
        self,
        service: str,
        env: str,
        edges: Sequence[float] | Any,
        endpoint: str | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> tuple[Any, Any]:
        """(requests, failures) per time bin, binned as ``numpy.histogram`` does ([e0, e1), ...,
        the last bin closed), one chunk at a time; a chunk that lies inside one bin is counted
        from its stored totals without reading a column."""
        import numpy as np

        edges = np.asarray(edges, dtype=np.float64)
        requests = np.zeros(edges.size - 1, dtype=np.int64)
        failures = np.zeros(edges.size - 1, dtype=np.int64)
        start, end = float(edges[0]), float(edges[-1])
        for chunk in self._chunks(service, env, start, end, run_ids, endpoint):
            index = single_bin(chunk.t_min, chunk.t_max, edges)
            if index is not None:
                total, failed = chunk.totals(endpoint)
                requests[index] += total
                failures[index] += failed
                continue
            wanted = ["ts", "success"] + (["endpoint_codes"] if chunk.mixed(endpoint) else [])
            columns = self._chunk_columns(chunk, wanted)
            ts, ok = columns["ts"], columns["success"]
            if chunk.mixed(endpoint):
                mine = columns["endpoint_codes"] == chunk.names.index(str(endpoint))
                ts, ok = ts[mine], ok[mine]
            total, failed = bin_counts(ts, ~ok, edges)
            requests += total
            failures += failed
        return requests, failures

    def run_seconds(self, run_id: str) -> list[SecondRow]:
        """A compacted run's per-second aggregates, in time order (they outlive its raw samples)."""
        rows = self._query(
            "SELECT second, requests, failures, latency_sum, ts_min, ts_max FROM sample_seconds "
            "WHERE run_id = ? ORDER BY second",
            (run_id,),
        )
        return [(int(s), int(r), int(f), float(total), float(a), float(b)) for s, r, f, total, a, b in rows]

    def window_seconds(self, service: str, env: str, start: float, end: float) -> list[SecondRow]:
        """Per-second aggregates of every compacted run of a service in an environment, for the
        seconds that overlap [start, end], summed over the runs."""
        rows = self._query(
            "SELECT s.second, SUM(s.requests), SUM(s.failures), SUM(s.latency_sum), MIN(s.ts_min), "
            "MAX(s.ts_max) FROM sample_seconds s JOIN runs r ON r.run_id = s.run_id "
            "WHERE r.service = ? AND r.env = ? AND s.ts_max >= ? AND s.ts_min <= ? "
            "GROUP BY s.second ORDER BY s.second",
            (service, env, start, end),
        )
        return [(int(s), int(r), int(f), float(total), float(a), float(b)) for s, r, f, total, a, b in rows]

    def _chunks(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        run_ids: Sequence[str] | None,
        endpoint: str | None,
    ) -> Iterator[ChunkInfo]:
        """The chunks overlapping [start, end] that hold ``endpoint`` (any, for None): those of
        finished runs, and the batches of runs not compacted yet, listed in one statement (so a
        compaction that commits meanwhile never shows a run twice, or not at all)."""
        runs_filter = "" if run_ids is None else f" AND run_id IN ({', '.join('?' * len(run_ids))})"
        where = f"WHERE service = ? AND env = ? AND t_max >= ? AND t_min <= ?{runs_filter}"
        params = [service, env, start, end, *(run_ids or [])]
        rows = self._query(
            f"SELECT 0, {_CHUNK_FIELDS} FROM sample_chunks {where} UNION ALL "
            f"SELECT 1, {_CHUNK_FIELDS} FROM sample_batches {where} "
            "AND run_id NOT IN (SELECT run_id FROM sample_chunks) ORDER BY 4, 2, 3",
            params * 2,
        )
        for chunk in map(_chunk_info, rows):
            if endpoint is None or endpoint in chunk.names:
                yield chunk

    def _run_chunks(self, run_id: str) -> list[ChunkInfo]:
        """Every chunk of one run: its compacted chunks, or while it has none, its batches."""
        rows = self._query(
            f"SELECT 0, {_CHUNK_FIELDS} FROM sample_chunks WHERE run_id = ? UNION ALL "
            f"SELECT 1, {_CHUNK_FIELDS} FROM sample_batches WHERE run_id = ? "
            "AND run_id NOT IN (SELECT run_id FROM sample_chunks) ORDER BY 3",
            (run_id, run_id),
        )
        return [_chunk_info(row) for row in rows]

    def _chunk_columns(self, chunk: ChunkInfo, names: Sequence[str]) -> dict[str, Any]:
        found = self._query(
            f"SELECT {', '.join(names)} FROM {CHUNK_TABLES[chunk.live]} WHERE run_id = ? AND seq = ?",
            (chunk.run_id, chunk.seq),
        )
        if not found:  # collected (``perfsig gc``) since it was listed
            raise StoreError(f"store {self.path}: the samples of run {chunk.run_id} were deleted while read")
        return {name: decode(name, blob) for name, blob in zip(names, found[0], strict=True)}

    # ------------------------------------------------------------------ compaction

    def compact_run(self, run_id: str) -> int:
        """Store a finished run's batches as chunks in time order, with per-second aggregates
        (the batches stay until ``perfsig gc`` collects the run: a read that listed them still
        finds them); returns how many samples."""
        total = 0
        with self._transaction() as db:  # every batch committed before it, none after
            found = db.execute("SELECT service, env FROM sample_batches WHERE run_id = ? LIMIT 1", (run_id,))
            first = found.fetchone()
            if first is None:
                return 0
            service, env = first
            # By first start time: a late batch holding one early sample (a request that hung
            # for the whole run) then holds back only itself, not every batch after it.
            rows = db.execute(
                f"SELECT 1, {_CHUNK_FIELDS} FROM sample_batches WHERE run_id = ? ORDER BY t_min, seq",
                (run_id,),
            ).fetchall()
            db.execute("DELETE FROM sample_chunks WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM sample_seconds WHERE run_id = ?", (run_id,))
            for seq, columns in enumerate(self._in_order([_chunk_info(row) for row in rows])):
                self._write_chunk(db, run_id, seq, service, env, columns)
                total += len(columns)
        self._forget_live(run_id)
        return total

    def _in_order(self, batches: Sequence[ChunkInfo]) -> Iterator[SampleColumns]:
        """A run's batches, ordered by t_min, merged into time order, in parts of
        CHUNK_SAMPLES (the last one smaller).

        Each batch is sorted, and every sample of the batches still to come starts at or
        after the next one's t_min, so everything before that time is final. Read by t_min,
        batches overlap by the latency of the requests in flight at a write, and a batch with
        an early straggler (a request that hung) by its own samples: what is held at a time is
        about two parts and that overlap; the merge runs once per part, not per batch. Batches
        that overlap far more (rows written in no order of time) are held until their times
        let them go: correct, with more memory."""
        import numpy as np

        held: list[SampleColumns] = []
        size, threshold = 0, 2 * CHUNK_SAMPLES
        for i, batch in enumerate(batches):
            columns = self._chunk_columns(batch, ("ts", "latency_ms", "success", "endpoint_codes"))
            held.append(
                SampleColumns(
                    columns["ts"],
                    columns["latency_ms"],
                    columns["success"],
                    columns["endpoint_codes"],
                    batch.names,
                )
            )
            size += batch.n
            last = i + 1 == len(batches)
            if size < threshold and not last:
                continue
            merged = concat_columns(held)
            final = (
                len(merged) if last else int(np.searchsorted(merged.ts, batches[i + 1].t_min, side="left"))
            )
            whole = final if last else final - final % CHUNK_SAMPLES
            for at in range(0, whole, CHUNK_SAMPLES):
                yield merged.where(slice(at, min(whole, at + CHUNK_SAMPLES)))
            rest = merged.where(slice(whole, None))
            held, size = ([rest], len(rest)) if len(rest) else ([], 0)
            # A merge that let little go waits until twice as much is held: O(n log n) in all.
            threshold = max(2 * CHUNK_SAMPLES, 2 * size)

    @staticmethod
    def _write_chunk(
        db: sqlite3.Connection, run_id: str, seq: int, service: str, env: str, columns: SampleColumns
    ) -> None:
        values = chunk_values(columns)
        names = ", ".join(values)
        db.execute(
            f"INSERT INTO sample_chunks (run_id, seq, service, env, {names}) "
            f"VALUES (?, ?, ?, ?, {', '.join('?' * len(values))})",
            (run_id, seq, service, env, *values.values()),
        )
        SampleTables._add_seconds(db, run_id, columns)

    @staticmethod
    def _add_seconds(db: sqlite3.Connection, run_id: str, columns: SampleColumns) -> None:
        """Add time-sorted samples to their run's per-second aggregates."""
        db.executemany(
            "INSERT INTO sample_seconds VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, second) DO UPDATE "
            "SET requests = requests + excluded.requests, failures = failures + excluded.failures, "
            "latency_sum = latency_sum + excluded.latency_sum, ts_min = MIN(ts_min, excluded.ts_min), "
            "ts_max = MAX(ts_max, excluded.ts_max)",
            [(run_id, *second) for second in seconds_of(columns)],
        )


def _chunk_info(row: Sequence[Any]) -> ChunkInfo:
    live, run_id, seq, t_min, t_max, n, failures, names, counts = row
    return ChunkInfo(
        run_id, seq, t_min, t_max, n, failures, tuple(json.loads(names)), json.loads(counts), bool(live)
    )
