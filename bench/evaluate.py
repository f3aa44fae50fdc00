"""Evaluating a gate over many stored samples: time and peak memory; with --gc, retention.

The seed monspec's StagingToProduction (9 entries: 7 judged, 2 smartscape skipped) over
N samples (default 1,000,000: half Staging, half Production, four endpoints) in the SQLite
store, judged by the local source as the gate does it after a load phase.

    python bench/evaluate.py [--samples 1000000] [--store PATH] [--gc]

Last line: ``evaluate samples=N seconds=S peak_rss_mb=M``. The store is filled (and its runs
compacted, as the load runner does) by a child process first; seconds and peak RSS are those of
the process that judges: opening the store, reading the windows, every verdict. ``--store``
keeps the filled store at PATH and judges it again on the next run instead of filling it anew.

``--gc`` then records the judged gate, runs a second, small gate an hour later (1 % of the
samples, at least 20,000) and runs ``perfsig gc --keep-gates 1``: it prints the store's size
before and after (WAL included) and whether the second gate's JSON report (the gate, its
comparisons and series, the check history) is the same before and after, on a line
``gc samples=N before_mb=B after_mb=A ratio=R report_unchanged=yes|no``.
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

from pytest_perfsig import cli  # noqa: E402
from pytest_perfsig.gate import Gate, GateOptions  # noqa: E402
from pytest_perfsig.load.runner import LoadResult, LoadSpec  # noqa: E402
from pytest_perfsig.monspec import load_monspec  # noqa: E402
from pytest_perfsig.report.json_report import build_json_report  # noqa: E402
from pytest_perfsig.store import RunRecord, SqliteStore  # noqa: E402

SEED = ROOT.parent / "shared" / "fixtures" / "seed-monspec.json"
if not SEED.exists():
    SEED = ROOT / "tests" / "data" / "monspecs" / "seed-monspec.json"
SERVICE = "SampleJSonService"
ENDPOINTS = ["/", "/version", "/api/echo", "/api/invoke"]
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: any time in the past
DURATION = 600.0
GATES = ("bench-gate-1", "bench-gate-2")


def fill(store: SqliteStore, samples: int, start: float, duration: float, gate: str = GATES[0]) -> None:
    rng = np.random.default_rng(1)
    per_env = samples // 2
    suffix = "" if gate == GATES[0] else "-2"
    for env in ("Staging", "Production"):
        store.create_run(
            RunRecord(
                run_id=env + suffix,
                service=SERVICE,
                env=env,
                gate_id=gate,
                started_at=start,
                status="completed",
            )
        )
        for offset in range(0, per_env, 100_000):
            n = min(100_000, per_env - offset)
            # In time order from batch to batch, as a capture writes them.
            ts = start + (offset + np.sort(rng.random(n)) * n) * duration / per_env
            latency = rng.lognormal(2.0, 0.4, n)
            ok = rng.random(n) > 0.01
            names = np.array(ENDPOINTS)[rng.integers(0, 4, n)]
            store.add_samples(
                zip(
                    [env + suffix] * n,
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
        store.compact_run(env + suffix)  # as the load runner does when a Locust process has exited


def judge(store: SqliteStore, gate_id: str, start: float) -> Gate:
    """The seed monspec's StagingToProduction over [start, start + DURATION], as a gate judges
    it after its load phase (verdicts kept in the Gate, not stored)."""
    options = GateOptions(
        stage="Staging",
        comparisons=("StagingToProduction",),
        store_path=store.path,
        warmup_s=0.0,
        optional=("smartscape",),  # the local source has no topology: skipped, not errors
    )
    gate = Gate(load_monspec(SEED), options, store=store)
    gate.gate_id = gate_id
    spec = LoadSpec(SERVICE, "Staging", "http://127.0.0.1:1", "-", 1, 1, DURATION)
    window = (start, start + DURATION)
    gate.load_results = {(SERVICE, "Staging"): LoadResult(spec, "Staging", 0, 0, window, Path("-"))}
    for check in gate.checks:
        gate.verdict(check)
    return gate


def record(store: SqliteStore, gate: Gate) -> None:
    """Store a judged gate as a gate run would have (its runs carry its id already)."""
    store.create_gate(gate.gate_id, gate.monspec.path, gate.options.stage, None)
    for check in gate.checks:
        store.save_verdict(gate.gate_id, check.check_id, check.service, gate.verdicts[check.check_id])
    store.finish_gate(gate.gate_id, gate.outcome())


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def retention(path: Path, samples: int) -> bool:
    """A second, small gate an hour later, then ``perfsig gc --keep-gates 1``: prints sizes;
    True when the second gate's report is the same before and after."""
    small = max(20_000, samples // 100)
    subprocess.run(
        [sys.executable, __file__, "--samples", str(small), "--fill", str(path), "--second"], check=True
    )
    with SqliteStore(path) as store:
        record(store, judge(store, GATES[1], START + 3600))
        store.checkpoint()
        before_report = build_json_report(store, GATES[1])
    before = store_bytes(path)
    code = cli.main(["gc", "--keep-gates", "1", "--store", str(path)])
    with SqliteStore(path) as store:
        after_report = build_json_report(store, GATES[1])
    after = store_bytes(path)
    same = all(before_report[key] == after_report[key] for key in ("gate", "checks"))
    print(
        f"gc samples={samples} before_mb={before / 1e6:.1f} after_mb={after / 1e6:.1f} "
        f"ratio={after / before:.4f} report_unchanged={'yes' if same and code == 0 else 'no'}"
    )
    return same and code == 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--store", help="keep the filled store here; reuse it if it exists")
    parser.add_argument("--gc", action="store_true", help="then measure retention (see above)")
    parser.add_argument("--fill", help=argparse.SUPPRESS)  # child: fill this store and exit
    parser.add_argument("--second", action="store_true", help=argparse.SUPPRESS)  # the later gate
    args = parser.parse_args()
    if args.fill:
        with SqliteStore(args.fill) as store:
            if args.second:
                fill(store, args.samples, START + 3600, DURATION, GATES[1])
            else:
                fill(store, args.samples, START, DURATION)
        return 0
    with tempfile.TemporaryDirectory(prefix="perfsig-bench-") as tmp:
        path = Path(args.store) if args.store else Path(tmp) / "bench.db"
        if not path.exists():
            command = [sys.executable, __file__, "--samples", str(args.samples), "--fill", str(path)]
            subprocess.run(command, check=True)
        began = time.perf_counter()
        store = SqliteStore(path)
        gate = judge(store, GATES[0], START)
        seconds = time.perf_counter() - began
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.gc:
            record(store, gate)
        store.close()
        kept = retention(path, args.samples) if args.gc else True
    statuses: dict[str, int] = {}
    for verdict in gate.verdicts.values():
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    print(f"verdicts: {statuses}")
    print(f"evaluate samples={args.samples} seconds={seconds:.3f} peak_rss_mb={peak_mb:.0f}")
    return 0 if statuses.get("error", 0) == 0 and kept else 1


if __name__ == "__main__":
    sys.exit(main())
