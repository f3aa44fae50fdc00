"""What a store file holds of running loads' samples, read straight from its batches (tests that
check what the capture stored, down to the row, without going through the store's reads)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from pytest_perfsig.store.columns import decode

StoredRow = tuple[str, float, str, str, str, float, int]
"""(run_id, ts, service, env, endpoint, latency_ms, success): a SampleRow without its status code."""


def stored_rows(path: Path | str, env: str | None = None) -> list[StoredRow]:
    """Every sample in the batches of ``path`` (of one environment, or all), in time order."""
    rows: list[StoredRow] = []
    sql = "SELECT run_id, service, env, endpoint_names, ts, latency_ms, success, endpoint_codes FROM sample_batches"
    with closing(sqlite3.connect(path)) as db:
        found = db.execute(sql + " WHERE env = ?", (env,)) if env is not None else db.execute(sql)
        for run_id, service, env_, names, *blobs in found.fetchall():
            ts, latency, success, codes = (
                decode(name, blob).tolist()
                for name, blob in zip(("ts", "latency_ms", "success", "endpoint_codes"), blobs, strict=True)
            )
            endpoints = json.loads(names)
            rows += [
                (run_id, t, service, env_, endpoints[code], value, int(ok))
                for t, value, ok, code in zip(ts, latency, success, codes, strict=True)
            ]
    return sorted(rows, key=lambda row: row[1])


def stored_count(path: Path | str, env: str | None = None) -> int:
    """How many samples the batches of ``path`` hold (of one environment, or all)."""
    with closing(sqlite3.connect(path)) as db:
        sql = "SELECT COALESCE(SUM(n), 0) FROM sample_batches"
        (count,) = (db.execute(sql + " WHERE env = ?", (env,)) if env else db.execute(sql)).fetchone()
    return int(count)
