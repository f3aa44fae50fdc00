"""Store schema version 6, the migration from version 5 (see ``migrations``): a running load's
samples are stored as column batches.

While a run goes on, each write of the capture is one row of ``sample_batches``, laid out like a
finished run's chunks (``sample_chunks``) and sorted by time within itself: one insert per batch
instead of an indexed insert per sample, in a fifth of the space (for batches of hundreds:
a load of a few requests a second writes batches of a few samples, each a row), and every read of a window
handles the batches of a running load the way it handles a finished run's chunks. The rows of
``samples`` become batches (runs not compacted yet) or go (compacted runs: their chunks hold
every column that is read); ``samples`` and ``sample_runs`` are dropped, and with them the
status codes, which nothing read.

Written against the schema of its time: later changes get a new migration, not an edit here.
"""

from __future__ import annotations

import json
import sqlite3

V6_BATCH_SAMPLES = 1 << 18
"""At most this many rows of ``samples`` become one batch."""

_V6_TABLES = (
    # One write of a running load's capture: the columns of ``sample_chunks``, time-sorted within
    # the batch (batches of one run may overlap in time: a slow request is written late).
    """CREATE TABLE sample_batches (
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
    "CREATE INDEX sample_batches_by_window ON sample_batches (service, env, t_max)",
)


def _v6_batch(
    db: sqlite3.Connection, key: tuple[str, int, str, str], rows: list[tuple[float, float, int, str]]
) -> None:
    """Time-sorted rows (ts, latency_ms, success, endpoint) of one run as one batch."""
    import numpy as np

    ts = np.asarray([row[0] for row in rows], dtype="<f8")
    latency = np.asarray([row[1] for row in rows], dtype="<f8")
    success = np.asarray([bool(row[2]) for row in rows], dtype=bool)
    names: dict[str, int] = {}
    codes = np.asarray([names.setdefault(str(row[3]), len(names)) for row in rows], dtype="<i4")
    counts = [
        [int(np.count_nonzero(codes == code)), int(np.count_nonzero((codes == code) & ~success))]
        for code in range(len(names))
    ]
    db.execute(
        "INSERT INTO sample_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *key,
            float(ts[0]),
            float(ts[-1]),
            int(ts.size),
            int(np.count_nonzero(~success)),
            json.dumps(list(names)),
            json.dumps(counts),
            ts.tobytes(),
            codes.tobytes(),
            success.astype(np.uint8).tobytes(),
            latency.tobytes(),
        ),
    )


def column_batches(db: sqlite3.Connection) -> None:
    """Version 6: the rows of runs not compacted become batches; ``samples`` and ``sample_runs`` go."""
    for statement in _V6_TABLES:
        db.execute(statement)
    live = db.execute(
        "SELECT run_id, service, env FROM sample_runs WHERE run_id NOT IN (SELECT run_id FROM sample_chunks)"
    ).fetchall()
    next_seq: dict[str, int] = {}
    for run_id, service, env in live:
        cursor = db.execute(
            "SELECT ts, latency_ms, success, endpoint FROM samples WHERE run_id = ? AND service = ? "
            "AND env = ? ORDER BY ts",
            (run_id, service, env),
        )
        while rows := cursor.fetchmany(V6_BATCH_SAMPLES):
            seq = next_seq.get(run_id, 0)
            _v6_batch(db, (run_id, seq, service, env), rows)
            next_seq[run_id] = seq + 1
    db.execute("DROP TABLE sample_runs")
    db.execute("DROP TABLE samples")
