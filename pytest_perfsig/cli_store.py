"""The ``perfsig`` commands that look after a store: ``runs`` (with its size per sample),
``gc`` (retention of raw samples) and ``pin`` (runs retention never collects)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from .errors import UsageError
from .gate.storage import opened_store
from .report.storage import describe_collection, describe_usage
from .store import DEFAULT_STORE_PATH


def add_store_commands(sub: Any) -> None:
    """Add ``runs``, ``gc`` and ``pin`` to the ``perfsig`` subcommands ``sub``."""
    runs = sub.add_parser(
        "runs", help="list the most recent load runs (ids for --perfsig-baseline) and the store's size"
    )
    runs.add_argument("--store", default=DEFAULT_STORE_PATH)
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(handler=runs_command)
    gc = sub.add_parser(
        "gc",
        help="delete the raw samples of old runs (gates, verdicts and per-second aggregates stay), "
        "then shrink the store",
    )
    gc.add_argument("--keep-gates", type=int, metavar="N", help="keep the raw samples of the newest N gates")
    gc.add_argument(
        "--older-than", metavar="AGE", help="only runs started longer ago than AGE: 30d, 12h, 90m"
    )
    gc.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    gc.add_argument("--store", default=DEFAULT_STORE_PATH)
    gc.set_defaults(handler=gc_command)
    pin = sub.add_parser("pin", help="keep a run's raw samples from gc (a gate's --perfsig-baseline pins it)")
    pin.add_argument("run_id", nargs="?", help="the run (without it: list the pinned runs)")
    pin.add_argument("--remove", action="store_true", help="unpin the run")
    pin.add_argument("--store", default=DEFAULT_STORE_PATH)
    pin.set_defaults(handler=pin_command)


def runs_command(args: argparse.Namespace) -> int:
    with opened_store(args.store, write=False) as store:
        runs = store.runs(args.limit)
        pinned = set(store.pinned_runs())
        usage = store.store_usage()
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
        marks = [
            m
            for m, on in (("pinned", run.run_id in pinned), ("samples collected", run.samples_collected_at))
            if on
        ]
        if run.dropped:
            marks.append(f"{run.dropped} samples dropped")
        print(
            f"{run.run_id:<28} {started}  {run.service}/{run.env:<12} build={run.build or '-':<8} "
            f"{run.status:<10} gate={run.gate_id or '-'}  {run.detail or ''}"
            + (f"  [{', '.join(marks)}]" if marks else "")
        )
    print(f"store {args.store}: {describe_usage(usage)}")
    return 0


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "": 86400.0}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (a bare number: days) as seconds."""
    match = _AGE.match(text)
    if match is None:
        raise UsageError(f"--older-than {text!r}: give an age such as 30d, 12h or 90m")
    return float(match[1]) * _AGE_UNITS[match[2]]


def gc_command(args: argparse.Namespace) -> int:
    if args.keep_gates is None and args.older_than is None:
        raise UsageError("perfsig gc: say which runs are old: --keep-gates N, --older-than AGE, or both")
    if args.keep_gates is not None and args.keep_gates < 0:
        raise UsageError("--keep-gates must be 0 or more")
    older = None if args.older_than is None else parse_age(args.older_than)
    with opened_store(args.store, write=not args.dry_run) as store:
        done = store.collect_samples(keep_gates=args.keep_gates, older_than_s=older, dry_run=args.dry_run)
    for line in describe_collection(done):
        print(f"perfsig: {line}")
    return 0


def pin_command(args: argparse.Namespace) -> int:
    with opened_store(args.store, write=args.run_id is not None) as store:
        if args.run_id is None:
            for run_id in store.pinned_runs():
                print(run_id)
            return 0
        if args.remove:
            if not store.unpin_run(args.run_id):
                print(f"perfsig: run {args.run_id!r} is not pinned in {args.store}", file=sys.stderr)
                return 1
            print(f"perfsig: unpinned {args.run_id}: gc may collect its raw samples")
            return 0
        if store.run(args.run_id) is None:
            raise UsageError(f"no run {args.run_id!r} in {args.store} (see `perfsig runs`)")
        store.pin_run(args.run_id)
    print(f"perfsig: pinned {args.run_id}: gc keeps its raw samples")
    return 0
