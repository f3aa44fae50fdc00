"""How often is the gate right? The original tutorial's build table as a verdict matrix.

Builds 1-4 of the sample app are deployed as Staging and as Production and gated the way the
original pipeline did:
- Staging: StagingToProduction, Staging (build N) against Production (build 1) in the same
  window, both under load;
- Production: ProductionToPreviousRun, Production (build N) against the run of the build it
  replaces (build 1), pinned with --perfsig-baseline.
Expected: build 1 approve / approve; 2 reject / reject; 3 approve / approve; 4 approve at
Staging, reject at Production. The build-1 cells are A/A runs (the same build on both sides).
Every gate is judged by both judges on the same samples: the scale-factor rule and the
statistical judge (Mann-Whitney U / Fisher).

    python bench/verdicts.py [--repeat 10] [--duration 8] [--users 10]

The last line is machine-readable:
    verdicts correct=C/T aa_false_rejections=F/N median_verdict_s=S p95_verdict_s=S
(for the default judge, the scale-factor rule).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import json5

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_perfsig.gate import Gate, GateOptions  # noqa: E402
from pytest_perfsig.monspec import parse_monspec  # noqa: E402
from pytest_perfsig.store import SqliteStore  # noqa: E402
from sample_app.launcher import start_app  # noqa: E402

EXPECTED = {  # (build, stage) -> approve?
    (1, "Staging"): True,
    (2, "Staging"): False,
    (3, "Staging"): True,
    (4, "Staging"): True,
    (1, "Production"): True,
    (2, "Production"): False,
    (3, "Production"): True,
    (4, "Production"): False,
}
JUDGES = ("scalefactor", "mannwhitney")
COMPARISON = {"Staging": "StagingToProduction", "Production": "ProductionToPreviousRun"}


@dataclass
class Cell:
    build: int
    stage: str
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JUDGES, 0))
    seconds: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def expected(self) -> bool:
        return EXPECTED[(self.build, self.stage)]


def monspec_text(judge: str) -> str:
    """The repo's monspec with every comparison using one judge."""
    document = json5.loads((ROOT / "monspec.json").read_text())
    for entity in document.values():
        for comparison in entity["comparisons"]:
            comparison["judge"] = judge
    return json.dumps(document)


def switch_build(url: str, build: int) -> None:
    httpx.get(f"{url}/api/version", params={"newBuildNumber": build}, timeout=5).raise_for_status()


def run_gate(
    stage: str,
    urls: dict[str, str],
    store: SqliteStore,
    args: argparse.Namespace,
    baseline_run: str | None,
    build: int,
) -> tuple[dict[str, str], float, str | None]:
    """Load once, judge with both judges; (verdict per judge, seconds to verdict, stage run id)."""
    options = GateOptions(
        stage=stage,
        comparisons=(COMPARISON[stage],),
        urls=urls,
        users=args.users,
        spawn_rate=args.users,
        duration_s=args.duration,
        store_path=store.path,
        build=str(build),
        loadtests_dir=ROOT / "loadtests",
        baseline_run=baseline_run,
    )
    started = time.monotonic()
    primary = Gate(parse_monspec(monspec_text(JUDGES[0]), "monspec.json"), options, store=store)
    primary.run(primary.checks)
    statuses = {JUDGES[0]: _status(primary)}
    seconds = time.monotonic() - started
    primary.finish()
    for judge in JUDGES[1:]:
        other = Gate(parse_monspec(monspec_text(judge), "monspec.json"), options, store=store)
        other.load_results, other.load_error, other.gate_id = (
            primary.load_results,
            primary.load_error,
            primary.gate_id,
        )
        statuses[judge] = _status(other)
    result = primary.load_results.get((next(iter(primary.monspec.entities)), stage))
    return statuses, seconds, result.run_id if result else None


def _status(gate: Gate) -> str:
    """The gate's status, with the first reason when it is not a pass."""
    for check in gate.checks:
        gate.verdict(check)
    status = gate.status()
    reasons = [v.message for v in gate.verdicts.values() if v.status in ("violation", "error")]
    return status if status == "pass" or not reasons else f"{status} ({reasons[0]})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10, help="rounds of the whole matrix (default 10)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per gate (default 8)")
    parser.add_argument("--users", type=int, default=10, help="Locust users per environment (default 10)")
    args = parser.parse_args()

    cells = {(b, s): Cell(b, s) for (b, s) in EXPECTED}
    with tempfile.TemporaryDirectory(prefix="perfsig-bench-") as tmp:
        work = Path(tmp)
        store = SqliteStore(work / "bench.db")
        with start_app("Staging", 1, work) as staging, start_app("Production", 1, work) as production:
            urls = {"Staging": staging.url, "Production": production.url}
            for round_no in range(1, args.repeat + 1):
                switch_build(production.url, 1)
                baseline = None
                for build in (1, 2, 3, 4):
                    switch_build(staging.url, build)
                    statuses, seconds, _ = run_gate("Staging", urls, store, args, None, build)
                    _record(cells[(build, "Staging")], statuses, seconds, round_no)
                # The build-1 Production traffic of the last Staging gate is what Production ran.
                baseline = store.baseline_runs(
                    next(iter(json5.loads((ROOT / "monspec.json").read_text()))),
                    "Production",
                    1,
                    passed_only=False,
                )[0].run_id
                for build in (1, 2, 3, 4):
                    switch_build(production.url, build)
                    statuses, seconds, _ = run_gate("Production", urls, store, args, baseline, build)
                    _record(cells[(build, "Production")], statuses, seconds, round_no)
                print(f"round {round_no}/{args.repeat} done", flush=True)
        store.close()
    return _report(cells, args.repeat)


def _record(cell: Cell, statuses: dict[str, str], seconds: float, round_no: int) -> None:
    cell.seconds.append(seconds)
    for judge, status in statuses.items():
        approved = status == "pass"
        # A gate that errors neither approves nor rejects correctly: it is a wrong verdict.
        correct = not status.startswith("error") and approved == cell.expected
        cell.correct[judge] += int(correct)
        if not correct:
            cell.wrong.append(f"round {round_no} {judge}: {status}")


def _report(cells: dict[tuple[int, str], Cell], repeat: int) -> int:
    print()
    print(
        f"{'build':>5}  {'stage':<10} {'expected':<8} "
        + "  ".join(f"{j:>12}" for j in JUDGES)
        + f"  {'median s':>8}  {'p95 s':>6}"
    )
    times: list[float] = []
    for cell in cells.values():
        times += cell.seconds
        print(
            f"{cell.build:>5}  {cell.stage:<10} {'approve' if cell.expected else 'reject':<8} "
            + "  ".join(f"{cell.correct[j]:>9}/{repeat:<2}" for j in JUDGES)
            + f"  {statistics.median(cell.seconds):8.1f}  {_p95(cell.seconds):6.1f}"
        )
    for cell in cells.values():
        for line in cell.wrong:
            print(f"  wrong: build {cell.build} {cell.stage} {line}")
    aa = [cells[(1, "Staging")], cells[(1, "Production")]]
    total = len(cells) * repeat
    summary = {}
    for judge in JUDGES:
        correct = sum(c.correct[judge] for c in cells.values())
        false_rejections = sum(repeat - c.correct[judge] for c in aa)
        summary[judge] = (correct, false_rejections)
        print(
            f"{judge}: correct {correct}/{total}, A/A false rejections {false_rejections}/{len(aa) * repeat}"
        )
    correct, false_rejections = summary[JUDGES[0]]
    print(
        f"verdicts correct={correct}/{total} aa_false_rejections={false_rejections}/{len(aa) * repeat} "
        f"median_verdict_s={statistics.median(times):.1f} p95_verdict_s={_p95(times):.1f}"
    )
    return 0 if correct == total else 1


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
