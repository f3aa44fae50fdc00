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

With --sequential the gates judge while the load runs (--perfsig-sequential): the same matrix
(--duration is then the longest load, default 10 s), plus regression-size cells on Staging
against Production (build 1), injected through the sample app's /api/regression: A/A
(nothing), latency +10 % on every request (inside the monspec's 30 % + 2 ms: approve), +50 %
(outside: reject), failures +0.2 points (inside 30 % + 0.5 points: approve) and +2 points
(outside: reject), each --cell-repeat times with --cell-duration as the longest load. The
latency cells run against a second pair of apps answering in --cell-latency-ms (default 40):
at the default 5 ms the 2-ms absolute tolerance alone is 40 % of a request, and the client's
own overhead does not grow with the app's work, so +50 % of the work would stay inside the
limit; much slower, and the monspec's static 100-ms limit on the service's average decides
instead (a request averages 1.25 base latencies: /api/invoke waits for its downstream call).
The last line is then:
    sequential reject_median_s=S approve_median_s=S aa_false_rejections=F/N power_lat50=P/N
    power_fail2=P/N inside_false_rejections=F/N correct=C/T
with times from the load's first request to the gate's decision (build 2 at Staging for
rejections, the matrix's approve cells for approvals), A/A over the A/A cell and the matrix's
build-1 cells, power as rejections within 30 s of the load's start, and correct over the matrix.
"""

from __future__ import annotations

import argparse
import json
import math
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
        warmup_s=args.warmup,
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
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load per gate (default 8; sequential: at most 10)",
    )
    parser.add_argument("--users", type=int, default=10, help="Locust users per environment (default 10)")
    parser.add_argument("--sequential", action="store_true", help="judge while the load runs, with the cells")
    parser.add_argument(
        "--cells", default=",".join(CELLS), help=f"regression cells to run (default {','.join(CELLS)})"
    )
    parser.add_argument("--cell-repeat", type=int, default=10, help="runs of each cell (default 10)")
    parser.add_argument(
        "--cell-duration", type=float, default=30.0, help="longest load of a cell's gate, s (default 30)"
    )
    parser.add_argument("--latency-ms", type=float, default=5.0, help="the apps' base latency (default 5)")
    parser.add_argument(
        "--cell-latency-ms",
        type=float,
        default=40.0,
        help="base latency of the latency cells' apps (default 40)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="--perfsig-warmup of the gates (default: the gate's, 2 s, or 0.5 s with --sequential)",
    )
    args = parser.parse_args()
    if args.sequential:
        return sequential_main(args)
    args.duration = 8.0 if args.duration is None else args.duration

    cells = {(b, s): Cell(b, s) for (b, s) in EXPECTED}
    with tempfile.TemporaryDirectory(prefix="perfsig-bench-") as tmp:
        work = Path(tmp)
        store = SqliteStore(work / "bench.db")
        with (
            start_app("Staging", 1, work, latency_ms=args.latency_ms) as staging,
            start_app("Production", 1, work, latency_ms=args.latency_ms) as production,
        ):
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
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


# ---------------------------------------------------------------------------- --sequential

# name -> (/api/regression query, approve?); the lat* cells run against the slower apps.
CELLS: dict[str, tuple[dict[str, float], bool]] = {
    "aa": ({}, True),
    "lat10": ({"latencyperc": 10}, True),
    "lat50": ({"latencyperc": 50}, False),
    "fail0.2": ({"failureperc": 0.2}, True),
    "fail2": ({"failureperc": 2}, False),
}


@dataclass
class Run:
    """One sequential gate: its status, how and when it was decided."""

    status: str  # the gate's status, with the first reason when it is not a pass
    verdict_s: float  # from the load's first request to the decision
    wall_s: float  # from the start of the gate to its verdicts (Locust start and stop included)
    sequential: bool  # decided by the sequential tests (else: the fixed rule at the longest load)

    @property
    def approved(self) -> bool:
        return self.status == "pass"

    @property
    def errored(self) -> bool:
        return self.status.startswith("error")


@dataclass
class SeqCell:
    name: str
    expected: bool
    runs: list[Run] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return sum(not r.errored and r.approved == self.expected for r in self.runs)

    @property
    def rejected(self) -> int:
        return sum(r.status.startswith("violation") for r in self.runs)


def set_regression(url: str, **values: float) -> None:
    query = {"latencyperc": 0.0, "failureperc": 0.0, **values}
    httpx.get(f"{url}/api/regression", params=query, timeout=5).raise_for_status()


def run_sequential_gate(
    stage: str,
    urls: dict[str, str],
    store: SqliteStore,
    args: argparse.Namespace,
    baseline_run: str | None,
    build: int,
    duration: float,
) -> Run:
    options = GateOptions(
        stage=stage,
        comparisons=(COMPARISON[stage],),
        urls=urls,
        users=args.users,
        spawn_rate=args.users,
        duration_s=duration,
        store_path=store.path,
        build=str(build),
        loadtests_dir=ROOT / "loadtests",
        baseline_run=baseline_run,
        warmup_s=args.warmup,
        sequential=True,
    )
    started = time.monotonic()
    gate = Gate(parse_monspec(monspec_text("scalefactor"), "monspec.json"), options, store=store)
    gate.run(gate.checks)
    verdicts = [gate.verdict(check) for check in gate.checks]
    wall = time.monotonic() - started
    status = _status(gate)
    gate.finish()
    spans = [r.window for r in gate.load_results.values()]
    load_s = max(e for _, e in spans) - min(s for s, _ in spans) if spans else math.nan
    decided: dict[str, list[float]] = {}
    for verdict in verdicts:
        at = (verdict.details or {}).get("decided_at_s")
        if isinstance(at, int | float):
            decided.setdefault(verdict.status, []).append(float(at))
    stopped = gate.monitor is not None and gate.monitor.stopped is not None
    if stopped and status.startswith("violation") and decided.get("violation"):
        return Run(status, min(decided["violation"]), wall, True)
    if stopped and status == "pass":
        return Run(status, max(decided.get("pass") or [load_s]), wall, True)
    return Run(status, load_s, wall, False)


def sequential_main(args: argparse.Namespace) -> int:
    duration = 10.0 if args.duration is None else args.duration
    names = [name for name in args.cells.split(",") if name]
    unknown = sorted(set(names) - set(CELLS))
    if unknown:
        raise SystemExit(f"unknown cells: {', '.join(unknown)} (known: {', '.join(CELLS)})")
    matrix = {key: SeqCell(f"build {key[0]} {key[1]}", expected) for key, expected in EXPECTED.items()}
    cells = {name: SeqCell(name, CELLS[name][1]) for name in names}
    entity = next(iter(json5.loads((ROOT / "monspec.json").read_text())))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="perfsig-bench-") as tmp:
        work = Path(tmp)
        store = SqliteStore(work / "bench.db")
        with (
            start_app("Staging", 1, work / "fast", latency_ms=args.latency_ms) as staging,
            start_app("Production", 1, work / "fast", latency_ms=args.latency_ms) as production,
            start_app("Staging", 1, work / "slow", latency_ms=args.cell_latency_ms) as slow_staging,
            start_app("Production", 1, work / "slow", latency_ms=args.cell_latency_ms) as slow_production,
        ):
            urls = {"Staging": staging.url, "Production": production.url}
            slow = {"Staging": slow_staging.url, "Production": slow_production.url}
            for round_no in range(1, args.repeat + 1):
                switch_build(production.url, 1)
                for build in (1, 2, 3, 4):
                    switch_build(staging.url, build)
                    run = run_sequential_gate("Staging", urls, store, args, None, build, duration)
                    _note(matrix[(build, "Staging")], run)
                baseline = store.baseline_runs(entity, "Production", 1, passed_only=False)[0].run_id
                for build in (1, 2, 3, 4):
                    switch_build(production.url, build)
                    run = run_sequential_gate("Production", urls, store, args, baseline, build, duration)
                    _note(matrix[(build, "Production")], run)
                print(f"matrix round {round_no}/{args.repeat} done", flush=True)
            switch_build(staging.url, 1)
            switch_build(production.url, 1)
            # Cells interleaved, so that a busier spell of the machine touches every cell alike.
            for repeat_no in range(1, args.cell_repeat + 1):
                for name, cell in cells.items():
                    where = slow if name.startswith("lat") else urls
                    set_regression(where["Staging"], **CELLS[name][0])
                    run = run_sequential_gate("Staging", where, store, args, None, 1, args.cell_duration)
                    set_regression(where["Staging"])
                    _note(cell, run)
                print(f"cells {repeat_no}/{args.cell_repeat} done", flush=True)
        store.close()
    print(
        f"(bench took {time.monotonic() - started:.0f} s; apps answer in {args.latency_ms:g} ms, "
        f"{args.cell_latency_ms:g} ms for the latency cells)"
    )
    return _sequential_report(matrix, cells, duration, args)


def _note(cell: SeqCell, run: Run) -> None:
    cell.runs.append(run)
    how = "sequential" if run.sequential else "fixed rule at the longest load"
    line = f"  {cell.name}: {run.status} after {run.verdict_s:.1f} s ({how}; gate {run.wall_s:.1f} s)"
    print(line, flush=True)


def _sequential_report(
    matrix: dict[tuple[int, str], SeqCell],
    cells: dict[str, SeqCell],
    duration: float,
    args: argparse.Namespace,
) -> int:
    print()
    print(
        f"{'cell':<22} {'expected':<8} {'correct':>8} {'seq.':>5} {'median s':>9} {'p95 s':>6} {'gate s':>7}"
    )
    for cell in [*matrix.values(), *cells.values()]:
        if not cell.runs:
            continue
        seconds = [r.verdict_s for r in cell.runs]
        print(
            f"{cell.name:<22} {'approve' if cell.expected else 'reject':<8} "
            f"{cell.correct:>5}/{len(cell.runs):<2} {sum(r.sequential for r in cell.runs):>5} "
            f"{_median(seconds):9.1f} {_p95(seconds):6.1f} {_median([r.wall_s for r in cell.runs]):7.1f}"
        )
    for cell in [*matrix.values(), *cells.values()]:
        for run in cell.runs:
            if run.errored or run.approved != cell.expected:
                print(f"  wrong: {cell.name}: {run.status}")
    rejects = [r.verdict_s for r in matrix[(2, "Staging")].runs]
    approves = [r.verdict_s for key, c in matrix.items() if EXPECTED[key] for r in c.runs]
    aa_cells = (matrix[(1, "Staging")], matrix[(1, "Production")], cells.get("aa"))
    aa = [r for c in aa_cells if c for r in c.runs]
    inside = [r for name in ("lat10", "fail0.2") if name in cells for r in cells[name].runs]

    def power(name: str) -> str:
        cell = cells.get(name)
        if cell is None:
            return "0/0"
        within = sum(r.status.startswith("violation") and r.verdict_s <= 30.0 for r in cell.runs)
        return f"{within}/{len(cell.runs)}"

    correct = sum(c.correct for c in matrix.values())
    total = sum(len(c.runs) for c in matrix.values())
    print(
        f"(matrix: longest load {duration:g} s; cells: {args.cell_duration:g} s; "
        f"power counts rejections within 30 s of the load's start)"
    )
    print(
        f"sequential reject_median_s={_median(rejects):.1f} approve_median_s={_median(approves):.1f} "
        f"aa_false_rejections={sum(not r.approved for r in aa)}/{len(aa)} "
        f"power_lat50={power('lat50')} power_fail2={power('fail2')} "
        f"inside_false_rejections={sum(not r.approved for r in inside)}/{len(inside)} "
        f"correct={correct}/{total}"
    )
    return 0 if correct == total else 1


if __name__ == "__main__":
    sys.exit(main())
