"""The ``perfsig`` command: check a monspec, list stored gates, show a gate's verdicts."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import PerfsigError
from .evaluate import Verdict
from .monspec import load_monspec
from .report.terminal import render_table, verdict_rows
from .store import DEFAULT_STORE_PATH, SqliteStore


def _validate(args: argparse.Namespace) -> int:
    monspec = load_monspec(args.monspec)
    for name, entity in monspec.entities.items():
        entries = list(entity.entries())
        print(
            f"{monspec.path}: {name} ({entity.etype}): {len(entity.environments)} environments "
            f"({', '.join(entity.environments)}), {len(entity.comparisons)} comparisons, "
            f"{len(entries)} signature entries"
        )
        for comparison in entity.comparisons:
            print(
                f"  {comparison.name}: {comparison.source} vs {comparison.compare} "
                f"(shift {comparison.shiftsourcetimeframe}/{comparison.shiftcomparetimeframe} s)"
            )
    return 0


def _gates(args: argparse.Namespace) -> int:
    with SqliteStore(args.store) as store:
        for gate in store.gates(args.limit):
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(gate["started_at"]))
            print(
                f"{gate['gate_id']}  {started}  {gate['stage']:<12} build={gate['build'] or '-':<8} "
                f"{gate['status']}"
            )
    return 0


def _runs(args: argparse.Namespace) -> int:
    with SqliteStore(args.store) as store:
        runs = store.runs(args.limit)
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
        print(
            f"{run.run_id:<28} {started}  {run.service}/{run.env:<12} build={run.build or '-':<8} "
            f"{run.status:<10} gate={run.gate_id or '-'}  {run.detail or ''}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report.html import write_html_report
    from .report.json_report import write_json_report

    out = Path(args.out or f"perfsig-report.{args.format}")
    write = write_html_report if args.format == "html" else write_json_report
    with SqliteStore(args.store) as store:
        if not store.gates(1):
            print(f"perfsig: no gate in {args.store} yet", file=sys.stderr)
            return 1
        try:
            written = write(store, out, gate_id=args.gate, history_limit=args.history)
        except KeyError:
            print(f"perfsig: no gate {args.gate!r} in {args.store}", file=sys.stderr)
            return 1
    print(f"perfsig: {args.format.upper()} report {written}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with SqliteStore(args.store) as store:
        records = store.verdicts(args.gate_id)
    if not records:
        print(f"perfsig: no verdicts stored for gate {args.gate_id!r} in {args.store}", file=sys.stderr)
        return 1
    verdicts = [(r.pop("check_id"), Verdict(**r)) for r in records]
    for line in render_table(verdict_rows(verdicts)):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfsig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a monspec file and list what it defines")
    validate.add_argument("monspec")
    validate.set_defaults(handler=_validate)
    gates = sub.add_parser("gates", help="list the most recent gates in the store")
    gates.add_argument("--store", default=DEFAULT_STORE_PATH)
    gates.add_argument("--limit", type=int, default=20)
    gates.set_defaults(handler=_gates)
    runs = sub.add_parser("runs", help="list the most recent load runs (ids for --perfsig-baseline)")
    runs.add_argument("--store", default=DEFAULT_STORE_PATH)
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(handler=_runs)
    report = sub.add_parser("report", help="write the HTML or JSON report of a gate and its history")
    report.add_argument("--out", help="file to write (default perfsig-report.html / .json)")
    report.add_argument("--format", choices=("html", "json"), default="html")
    report.add_argument("--gate", help="gate id (default: the newest)")
    report.add_argument("--history", type=int, default=50, help="gates in the history view (default 50)")
    report.add_argument("--store", default=DEFAULT_STORE_PATH)
    report.set_defaults(handler=_report)
    show = sub.add_parser("show", help="show the verdicts of one stored gate")
    show.add_argument("gate_id")
    show.add_argument("--store", default=DEFAULT_STORE_PATH)
    show.set_defaults(handler=_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except PerfsigError as exc:
        print(f"perfsig: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
