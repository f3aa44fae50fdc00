"""Store schema version 5, the migration from version 4 (see ``migrations``): long gates and
long-lived stores.

A finished run's samples become column chunks of bounded size (``sample_chunks``, replacing
one block per run, so that reading a run never needs more memory than one chunk), every
compacted run keeps per-second aggregates (``sample_seconds``) that outlive its raw samples
(``perfsig gc``), runs record how many samples the capture dropped and when their raw samples
were collected, and baseline runs pinned by a gate are kept in ``pins``; ``sample_runs`` lists the
runs that have rows.

Written against the schema of its time: later changes get a new migration, not an edit here.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

V5_CHUNK_SAMPLES = 1 << 18
"""Samples per chunk: what one read of a chunk costs in memory (about 6 MB of columns)."""

_V5_TABLES = (
    "ALTER TABLE runs ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN samples_collected_at REAL",
    # A finished run's samples in time order, CHUNK samples at most per row: little-endian
    # float64 ts and latency_ms, uint8 success, int32 codes into endpoint_names; per-chunk
    # totals and per-endpoint [requests, failures] so that counts need no column at all.
    """CREATE TABLE sample_chunks (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        service TEXT NOT NULL,
        env TEXT NOT NULL,
        t_min REAL NOT NULL,
        t_max REAL NOT NULL,
        n INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        endpoint_names TEXT NOT NULL,
        endpoint_counts TEXT NOT NULL,
        ts BLOB NOT NULL,
        endpoint_codes BLOB NOT NULL,
        success BLOB NOT NULL,
        latency_ms BLOB NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    "CREATE INDEX sample_chunks_by_window ON sample_chunks (service, env, t_max)",
    # Per run and second (floor of the request start): what the reports and the history show
    # once the raw samples of a run are collected.
    """CREATE TABLE sample_seconds (
        run_id TEXT NOT NULL,
        second INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        latency_sum REAL NOT NULL,
        ts_min REAL NOT NULL,
        ts_max REAL NOT NULL,
        PRIMARY KEY (run_id, second)
    ) WITHOUT ROWID""",
    "CREATE TABLE pins (run_id TEXT PRIMARY KEY, gate_id TEXT, pinned_at REAL NOT NULL)",
    # Every run with rows in ``samples``: a read finds the runs not compacted yet without
    # scanning the rows of those that are.
    """CREATE TABLE sample_runs (
        run_id TEXT NOT NULL,
        service TEXT NOT NULL,
        env TEXT NOT NULL,
        PRIMARY KEY (run_id, service, env)
    ) WITHOUT ROWID""",
    "INSERT OR IGNORE INTO sample_runs SELECT DISTINCT run_id, service, env FROM samples",
    # Rows are read by run only now (windows read chunks): one index, in time order per run,
    # instead of two; each insert maintains less.
    "DROP INDEX IF EXISTS samples_by_window_run",
    "DROP INDEX IF EXISTS samples_by_run",
    "CREATE INDEX samples_by_run_ts ON samples (run_id, ts)",
)


def _v5_chunk(db: sqlite3.Connection, key: tuple[str, int, str, str], columns: tuple[Any, ...]) -> None:
    """One chunk of sorted columns (ts, latency, success, codes, names) and its seconds."""
    import numpy as np

    ts, latency, success, codes, names = columns
    counts = [
        [int(np.count_nonzero(codes == code)), int(np.count_nonzero((codes == code) & ~success))]
        for code in range(len(names))
    ]
    db.execute(
        "INSERT INTO sample_chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *key,
            float(ts[0]),
            float(ts[-1]),
            int(ts.size),
            int(np.count_nonzero(~success)),
            json.dumps(names),
            json.dumps(counts),
            ts.astype("<f8").tobytes(),
            codes.astype("<i4").tobytes(),
            success.astype(np.uint8).tobytes(),
            latency.astype("<f8").tobytes(),
        ),
    )
    seconds = np.floor(ts).astype(np.int64)
    first = np.flatnonzero(np.r_[True, seconds[1:] != seconds[:-1]])
    last = np.r_[first[1:], ts.size] - 1
    db.executemany(
        "INSERT INTO sample_seconds VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, second) DO UPDATE "
        "SET requests = requests + excluded.requests, failures = failures + excluded.failures, "
        "latency_sum = latency_sum + excluded.latency_sum, ts_min = MIN(ts_min, excluded.ts_min), "
        "ts_max = MAX(ts_max, excluded.ts_max)",
        zip(
            [key[0]] * first.size,
            seconds[first].tolist(),
            (last - first + 1).tolist(),
            np.add.reduceat((~success).astype(np.int64), first).tolist(),
            np.add.reduceat(latency, first).tolist(),
            ts[first].tolist(),
            ts[last].tolist(),
            strict=True,
        ),
    )


def chunked_samples_and_retention(db: sqlite3.Connection) -> None:
    """Version 3: runs' blocks become bounded chunks with per-second aggregates; drop counts,
    collection times and pins for retention."""
    import numpy as np

    for statement in _V5_TABLES:
        db.execute(statement)
    blocks = db.execute(
        "SELECT run_id, service, env, ts, latency_ms, success, endpoint_codes, endpoint_names "
        "FROM sample_blocks"
    )
    for run_id, service, env, ts_blob, latency_blob, success_blob, codes_blob, names in blocks:
        ts = np.frombuffer(ts_blob, dtype="<f8")
        latency = np.frombuffer(latency_blob, dtype="<f8")
        success = np.frombuffer(success_blob, dtype=np.uint8).astype(bool)
        codes = np.frombuffer(codes_blob, dtype="<i4")
        for seq, at in enumerate(range(0, ts.size, V5_CHUNK_SAMPLES)):
            part = slice(at, at + V5_CHUNK_SAMPLES)
            columns = (ts[part], latency[part], success[part], codes[part], json.loads(names))
            _v5_chunk(db, (run_id, seq, service, env), columns)
    db.execute("DROP TABLE sample_blocks")
