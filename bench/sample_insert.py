"""What does it cost the runner to store a running load's samples, per sample?

    python bench/sample_insert.py [--samples 200000] [--rows 1000] [--rounds 5]

The capture's writer (in the runner's process, beside the Locust processes, on a machine the
load keeps busy) stores every sample as it arrives, ``--rows`` at a time (the writer's
``WRITE_ROWS``). Two ways of storing the same samples, each into a fresh file, measured in
alternation, ``--rounds`` times:

- ``rows`` (the reference: schema version 5, the version before batches): one indexed row per
  sample in ``samples`` (with its index on (run_id, ts)), each write one JSON array inserted
  by ``json_each``;
- ``batch`` (this version, ``SqliteStore.add_samples``): each write one row of
  ``sample_batches``, the columns of its samples sorted by time.

The samples are those of a busy run: 3 endpoints, start times a quarter millisecond apart,
written in the order they finish (latencies up to a few ms). Prints, per way (medians over the
rounds), the CPU time of this process per sample and the store file's bytes per sample, then
the machine-readable line
    sample_insert rows_us=R batch_us=B speedup=S rows_bytes=X batch_bytes=Y
speedup = rows_us / batch_us, each the median over the rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_perfsig.store import SqliteStore  # noqa: E402
from pytest_perfsig.store.samples import SampleRow  # noqa: E402

# The reference: how schema version 5 stored a running load's samples.
V5_ROWS = (
    """CREATE TABLE samples (
        run_id TEXT NOT NULL, ts REAL NOT NULL, service TEXT NOT NULL, env TEXT NOT NULL,
        endpoint TEXT NOT NULL, latency_ms REAL NOT NULL, success INTEGER NOT NULL,
        status_code INTEGER NOT NULL
    )""",
    "CREATE INDEX samples_by_run_ts ON samples (run_id, ts)",
)
V5_INSERT = "INSERT INTO samples SELECT " + ", ".join(f"value->>{i}" for i in range(8)) + " FROM json_each(?)"


def samples(count: int) -> list[SampleRow]:
    rng = random.Random(7)
    t0 = time.time()
    started = [t0 + k * 0.00025 for k in range(count)]
    latency = [rng.lognormvariate(0.0, 0.7) for _ in range(count)]
    finished = sorted(range(count), key=lambda k: started[k] + latency[k] / 1000.0)
    return [
        ("run-0123456789ab", started[k], "Svc", "Staging", f"/api/{k % 3}", latency[k], 1, 200)
        for k in finished
    ]


def store_rows(path: Path, work: list[SampleRow], rows: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in V5_ROWS:
        db.execute(statement)
    started = time.process_time()
    for at in range(0, len(work), rows):
        db.execute(V5_INSERT, (json.dumps(work[at : at + rows], allow_nan=False),))
    took = time.process_time() - started
    db.close()
    return took


def store_batches(path: Path, work: list[SampleRow], rows: int) -> float:
    with SqliteStore(path) as store:
        started = time.process_time()
        for at in range(0, len(work), rows):
            store.add_samples(work[at : at + rows])
        return time.process_time() - started


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = samples(args.samples)
    with SqliteStore(Path(tempfile.mkdtemp()) / "warm.db") as warm:  # imports, numpy, first open
        warm.add_samples(work[:10])
    cpu: dict[str, list[float]] = {"rows": [], "batch": []}
    size: dict[str, list[float]] = {"rows": [], "batch": []}
    for round_ in range(args.rounds):
        ways = [("rows", store_rows), ("batch", store_batches)]
        for name, way in ways if round_ % 2 == 0 else reversed(ways):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{name}.db"
                cpu[name].append(way(path, work, args.rows) / len(work) * 1e6)
                size[name].append(file_bytes(path) / len(work))
    us = {name: statistics.median(values) for name, values in cpu.items()}
    per = {name: statistics.median(values) for name, values in size.items()}
    print(f"{len(work):,} samples, {args.rows} per write, {args.rounds} rounds (medians)")
    ways = (("rows", "schema 5: an indexed row per sample"), ("batch", "a column batch per write"))
    for name, what in ways:
        print(f"{name:5} ({what:36}) {us[name]:6.2f} us CPU/sample, {per[name]:6.1f} bytes/sample")
    print(
        f"sample_insert rows_us={us['rows']:.2f} batch_us={us['batch']:.2f} "
        f"speedup={us['rows'] / us['batch']:.1f} rows_bytes={per['rows']:.1f} batch_bytes={per['batch']:.1f}"
    )


if __name__ == "__main__":
    main()
