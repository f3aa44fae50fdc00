"""Evaluating a gate over many stored samples: time and peak memory.

The seed monspec's StagingToProduction (9 entries: 7 judged, 2 smartscape skipped) over
N samples (default 1,000,000: half Staging, half Production, four endpoints) in the SQLite
store, judged by the local source as the gate does it after a load phase.

    python bench/evaluate.py [--samples 1000000]

Last line: ``evaluate samples=N seconds=S peak_rss_mb=M``. The store is filled (and its runs
compacted, as the load runner does) by a child process first; seconds and peak RSS are those of
the process that judges: opening the store, reading the windows, every verdict.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_perfsig.gate import Gate, GateOptions  # noqa: E402
from pytest_perfsig.load.runner import LoadResult, LoadSpec  # noqa: E402
from pytest_perfsig.monspec import load_monspec  # noqa: E402
from pytest_perfsig.store import RunRecord, SqliteStore  # noqa: E402

SEED = ROOT.parent / "shared" / "fixtures" / "seed-monspec.json"
if not SEED.exists():
    SEED = ROOT / "tests" / "data" / "monspecs" / "seed-monspec.json"
SERVICE = "SampleJSonService"
ENDPOINTS = ["/", "/version", "/api/echo", "/api/invoke"]


def fill(store: SqliteStore, samples: int, start: float, duration: float) -> None:
    rng = np.random.default_rng(1)
    per_env = samples // 2
    for env in ("Staging", "Production"):
        store.create_run(
            RunRecord(run_id=env, service=SERVICE, env=env, started_at=start, status="completed")
        )
        for offset in range(0, per_env, 100_000):
            n = min(100_000, per_env - offset)
            ts = start + np.sort(rng.random(n)) * duration
            latency = rng.lognormal(2.0, 0.4, n)
            ok = rng.random(n) > 0.01
            names = np.array(ENDPOINTS)[rng.integers(0, 4, n)]
            store.add_samples(
                zip(
                    [env] * n,
                    ts.tolist(),
                    [SERVICE] * n,
                    [env] * n,
                    names.tolist(),
                    latency.tolist(),
                    ok.astype(int).tolist(),
                    [200] * n,
                    strict=True,
                )
            )
        store.compact_run(env)  # as the load runner does when a Locust process has exited


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--fill", help=argparse.SUPPRESS)  # child: fill this store and exit
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    duration = 600.0
    if args.fill:
        with SqliteStore(args.fill) as store:
            fill(store, args.samples, args.start, duration)
        return 0
    start = time.time() - 3600
    with tempfile.TemporaryDirectory(prefix="perfsig-bench-") as tmp:
        path = Path(tmp) / "bench.db"
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--samples",
                str(args.samples),
                "--fill",
                str(path),
                "--start",
                repr(start),
            ],
            check=True,
        )
        began = time.perf_counter()
        store = SqliteStore(path)
        options = GateOptions(
            stage="Staging", comparisons=("StagingToProduction",), store_path=store.path, warmup_s=0.0
        )
        gate = Gate(load_monspec(SEED), options, store=store)
        spec = LoadSpec(SERVICE, "Staging", "http://127.0.0.1:1", "-", 1, 1, duration)
        gate.load_results = {
            (SERVICE, "Staging"): LoadResult(spec, "Staging", 0, 0, (start, start + duration), Path("-"))
        }
        verdicts = [gate.verdict(check) for check in gate.checks]
        seconds = time.perf_counter() - began
        store.close()
    statuses = {}
    for verdict in verdicts:
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"verdicts: {statuses}")
    print(f"evaluate samples={args.samples} seconds={seconds:.3f} peak_rss_mb={peak_mb:.0f}")
    return 0 if statuses.get("error", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
