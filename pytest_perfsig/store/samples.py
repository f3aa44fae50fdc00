"""The raw samples of load runs (``runs``): one row per request while a run goes on (written by the
Locust process's capture, WAL mode, so pytest reads progress at the same time), and column
chunks once it has finished, which is what analysis reads (``columns``).

Reads stream chunk by chunk and load only the columns a question needs: a latency read holds
the latencies of its window, a count holds one number per time bin, so judging a long run
needs no more memory than its largest window's values.
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
    columns_of_rows,
    concat_columns,
    decode,
    seconds_of,
    single_bin,
    window_slice,
)
from .runs import RunRecord, RunTables

SampleRow = tuple[str, float, str, str, str, float, int, int]
"""(run_id, ts, service, env, endpoint, latency_ms, success, status_code)"""


__all__ = ["SampleColumns", "SampleRow", "SampleTables", "SecondRow", "concat_columns"]


_FIELDS = ", ".join(f"value->>{i}" for i in range(8))  # of a SampleRow, in column order
INSERT_JSON_ROWS = f"INSERT INTO samples SELECT {_FIELDS} FROM json_each(?)"


class SampleTables(RunTables):
    """The ``samples``, ``sample_runs``, ``sample_chunks`` and ``sample_seconds`` tables (and,
    from :class:`RunTables`, the ``runs`` they belong to)."""

    # ------------------------------------------------------------------ rows and counts

    def add_samples(self, rows: Iterable[SampleRow]) -> None:
        """Store rows as one JSON array, which SQLite inserts without the GIL: ``executemany``
        takes it back per row, and beside a busy thread crawls (bench/sample_insert.py).

        Rows of runs this connection has already listed in ``sample_runs`` (every batch of a
        capture but its first) go in as that one statement alone, without BEGIN, the listing
        and COMMIT: a quarter of the calls into SQLite, each a turn with the GIL."""
        rows = list(rows)
        try:
            batch = json.dumps(rows, allow_nan=False)
        except ValueError:  # infinity: JSON has no word for it
            batch = ""
        runs = {(row[0], row[2], row[3]) for row in rows}  # before the write lock is taken
        listed: set[tuple[str, str, str]] = self.__dict__.setdefault("_listed_runs", set())
        if batch and runs <= listed:
            self._statement(INSERT_JSON_ROWS, (batch,))
            return
        with self._transaction() as db:
            if batch:
                db.execute(INSERT_JSON_ROWS, (batch,))
            else:
                db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT OR IGNORE INTO sample_runs VALUES (?, ?, ?)", runs)
        listed |= runs

    def run_counts(self, run_id: str) -> tuple[int, int]:
        """(requests, failures) stored so far for a run: from its chunks once compacted, its
        per-second aggregates once its raw samples are collected, its rows while it runs."""
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
        # Rows only ever get larger rowids while a run is written, so each call counts the
        # rows added since the last one: progress stays cheap over an hour-long run.
        live: dict[str, tuple[int, int, int]] = self.__dict__.setdefault("_live", {})
        seen, total, failed = live.get(run_id, (0, 0, 0))
        ((top,),) = self._query("SELECT COALESCE(MAX(rowid), 0) FROM samples")
        ((added, added_failed),) = self._query(
            "SELECT COUNT(*), COALESCE(SUM(1 - success), 0) FROM samples "
            "WHERE rowid > ? AND rowid <= ? AND +run_id = ?",
            (seen, top, run_id),
        )
        live[run_id] = (max(seen, int(top)), total + int(added), failed + int(added_failed))
        return live[run_id][1], live[run_id][2]

    def _forget_live(self, run_id: str) -> None:
        """Forget what this connection keeps about a run whose rows were compacted or collected."""
        self.__dict__.get("_live", {}).pop(run_id, None)
        listed: set[tuple[str, str, str]] = self.__dict__.get("_listed_runs", set())
        listed -= {run for run in listed if run[0] == run_id}

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
        for sql in (
            "SELECT MIN(t_min), MAX(t_max) FROM sample_chunks WHERE run_id = ?",
            "SELECT MIN(ts_min), MAX(ts_max) FROM sample_seconds WHERE run_id = ?",
            "SELECT MIN(ts), MAX(ts) FROM samples WHERE run_id = ?",
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
        parts.extend(self._row_parts(service, env, start, end, run_ids, endpoint))
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
        rows = [part.latency_ms for part in self._row_parts(service, env, start, end, run_ids, endpoint)]
        return np.concatenate([out[:filled], *rows]) if rows else out[:filled]

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
        for part in self._row_parts(service, env, start, end, run_ids, endpoint):
            total, failed = bin_counts(part.ts, ~part.success, edges)
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
        """The chunks overlapping [start, end] that hold ``endpoint`` (any, for None)."""
        runs_filter = "" if run_ids is None else f" AND run_id IN ({', '.join('?' * len(run_ids))})"
        rows = self._query(
            "SELECT run_id, seq, t_min, t_max, n, failures, endpoint_names, endpoint_counts "
            f"FROM sample_chunks WHERE service = ? AND env = ? AND t_max >= ? AND t_min <= ?{runs_filter} "
            "ORDER BY t_min, run_id, seq",
            [service, env, start, end, *(run_ids or [])],
        )
        for run_id, seq, t_min, t_max, n, failures, names, counts in rows:
            names_, counts_ = tuple(json.loads(names)), json.loads(counts)
            chunk = ChunkInfo(run_id, seq, t_min, t_max, n, failures, names_, counts_)
            if endpoint is None or endpoint in chunk.names:
                yield chunk

    def _chunk_columns(self, chunk: ChunkInfo, names: Sequence[str]) -> dict[str, Any]:
        ((*blobs,),) = self._query(
            f"SELECT {', '.join(names)} FROM sample_chunks WHERE run_id = ? AND seq = ?",
            (chunk.run_id, chunk.seq),
        )
        return {name: decode(name, blob) for name, blob in zip(names, blobs, strict=True)}

    def _row_parts(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        run_ids: Sequence[str] | None,
        endpoint: str | None,
    ) -> Iterator[SampleColumns]:
        """Rows of runs not compacted yet (still running), run by run in time order, a chunk
        at a time."""
        sql = "SELECT run_id FROM sample_runs WHERE service = ? AND env = ? "
        sql += "AND run_id NOT IN (SELECT run_id FROM sample_chunks)"
        live = [str(run_id) for (run_id,) in self._query(sql, (service, env))]
        for run_id in live if run_ids is None else [r for r in live if r in run_ids]:
            params: list[Any] = [run_id, service, env, start, end]
            sql = "SELECT ts, latency_ms, success, endpoint FROM samples INDEXED BY samples_by_run_ts "
            sql += "WHERE run_id = ? AND service = ? AND env = ? AND ts >= ? AND ts <= ?"
            if endpoint is not None:
                sql += " AND endpoint = ?"
                params.append(endpoint)
            for rows in self._stream(sql + " ORDER BY ts", params):
                yield columns_of_rows(rows)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[list[Any]]:
        """The result of a query in lists of at most CHUNK_SAMPLES rows."""
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc
        try:
            while True:
                try:
                    rows = cursor.fetchmany(CHUNK_SAMPLES)
                except sqlite3.Error as exc:
                    raise StoreError(f"store {self.path}: {exc}") from exc
                if not rows:
                    return
                yield rows
        finally:
            cursor.close()

    # ------------------------------------------------------------------ compaction

    def compact_run(self, run_id: str) -> int:
        """Store a finished run's samples as column chunks with per-second aggregates (the
        rows stay until ``perfsig gc`` collects the run); returns how many samples."""
        first = self._query("SELECT service, env FROM samples WHERE run_id = ? LIMIT 1", (run_id,))
        if not first:
            return 0
        service, env = first[0]
        total = 0
        with self._transaction() as db:
            db.execute("DELETE FROM sample_chunks WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM sample_seconds WHERE run_id = ?", (run_id,))
            sql = "SELECT ts, latency_ms, success, endpoint FROM samples WHERE run_id = ? ORDER BY ts"
            for seq, rows in enumerate(self._stream(sql, (run_id,))):
                columns = columns_of_rows(rows)
                self._write_chunk(db, run_id, seq, service, env, columns)
                total += len(columns)
        self._forget_live(run_id)
        return total

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
