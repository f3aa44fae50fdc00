"""How fast does the capture's writer thread store samples while another thread keeps the CPU
busy, as Locust's gevent hub does in the load process?

    python bench/sample_insert.py [--batches 40] [--rows 500]

Stores the same batches twice into a fresh store, each time beside a thread that spins in
Python: once row by row (``executemany``, which takes the GIL back for every row, and waits
for the busy thread to hand it over each time) and once as the store does it
(``SqliteStore.add_samples``: one JSON array per batch, inserted by SQLite without the GIL).
Prints per-row write time for both, and the spinning thread's progress meanwhile, then
``sample_insert rowwise_us=R batch_us=B speedup=S``.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pytest_perfsig.store import SqliteStore
from pytest_perfsig.store.samples import SampleRow


def batches(count: int, rows: int, run_id: str) -> list[list[SampleRow]]:
    t0 = time.time()
    return [
        [
            (run_id, t0 + b + k * 1e-4, "Svc", "Staging", "/api/invoke", 5.0 + k % 17, 1, 200)
            for k in range(rows)
        ]
        for b in range(count)
    ]


def timed_beside_busy_thread(
    write: Callable[[list[SampleRow]], None], work: list[list[SampleRow]]
) -> tuple[float, int]:
    """Seconds per row of ``write`` over ``work``, and the busy thread's loops per second."""
    stop = threading.Event()
    loops = [0]

    def spin() -> None:
        while not stop.is_set():
            loops[0] += 1
            sum(range(200))

    thread = threading.Thread(target=spin)
    thread.start()
    started = time.perf_counter()
    for batch in work:
        write(batch)
    took = time.perf_counter() - started
    stop.set()
    thread.join()
    return took / sum(len(b) for b in work), int(loops[0] / took)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "perfsig.db") as store:
        own = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)

        def rowwise(batch: list[SampleRow]) -> None:
            own.execute("BEGIN IMMEDIATE")  # one transaction per batch, as the store does
            own.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
            own.execute("COMMIT")

        row_s, row_loops = timed_beside_busy_thread(rowwise, batches(args.batches, args.rows, "rowwise"))
        own.close()
        batch_s, batch_loops = timed_beside_busy_thread(
            store.add_samples, batches(args.batches, args.rows, "batch")
        )
    print(f"row by row (executemany):  {row_s * 1e6:9.1f} us/row, busy thread {row_loops:,} loops/s")
    print(f"one JSON array per batch:  {batch_s * 1e6:9.1f} us/row, busy thread {batch_loops:,} loops/s")
    print(
        f"sample_insert rowwise_us={row_s * 1e6:.1f} batch_us={batch_s * 1e6:.1f} "
        f"speedup={row_s / batch_s:.0f}"
    )


if __name__ == "__main__":
    main()
