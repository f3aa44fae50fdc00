"""The JSON report: one gate in full and the history of recent gates, for machines.

The schema is documented in docs/report-json.md; ``schema_version`` changes whenever a key
is renamed or removed or its meaning changes (adding keys does not change it).
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ..store.base import ReportSource
from ..store.sqlite import StoreUsage
from .gate_report import GateReport, build_gate_report
from .history import History, build_history
from .model import iso_time, jsonable

SCHEMA_VERSION = 2


def generator() -> str:
    try:
        return f"pytest-perfsig {metadata.version('pytest-perfsig')}"
    except metadata.PackageNotFoundError:
        return "pytest-perfsig"


def usage_dict(usage: StoreUsage | None) -> dict[str, Any] | None:
    """The store's size for the raw samples it holds, as the JSON report writes it."""
    if usage is None:
        return None
    return {
        "bytes": usage.bytes,
        "samples": usage.samples,
        "bytes_per_sample": usage.bytes_per_sample,
        "runs_with_samples": usage.runs_with_samples,
        "runs_collected": usage.runs_collected,
    }


def report_dict(
    report: GateReport | None, history: History, store_path: str, usage: StoreUsage | None = None
) -> dict[str, Any]:
    """The JSON document of an already built gate report and history."""
    first = [v.check_id for v in report.verdicts] if report else []
    checks = []
    for check in history.checks(first):
        checks.append(
            {
                "check_id": check.check_id,
                "comparison": check.comparison,
                "label": check.label,
                "unit": check.unit,
                "points": [
                    {
                        "gate_id": entry.gate.gate_id,
                        "started_at": entry.gate.started_at,
                        "stage": entry.gate.stage,
                        "build": entry.gate.build,
                        "pipeline": entry.gate.pipeline,
                        "status": verdict.status,
                        "source_value": verdict.get("source_value"),
                        "compare_value": verdict.get("compare_value"),
                        "limit": verdict.get("limit"),
                    }
                    for entry, verdict in check.points
                ],
            }
        )
    document = {
        "schema_version": SCHEMA_VERSION,
        "generator": generator(),
        "generated_at": iso_time(time.time()),
        "store": store_path,
        "gate_id": report.gate.gate_id if report else None,
        "history_limit": history.limit,
        "gate": report.to_dict() if report else None,
        "gates": [entry.to_dict() for entry in history.entries],
        "checks": checks,
        "store_size": usage_dict(usage),
    }
    return jsonable(document)  # type: ignore[no-any-return]


def build_json_report(
    store: ReportSource, gate_id: str | None = None, history_limit: int = 50
) -> dict[str, Any]:
    """The report of gate ``gate_id`` (default: the newest) and the newest ``history_limit``
    gates, as a JSON-ready dict. Raises KeyError for a gate the store does not hold."""
    report = build_gate_report(store, gate_id)
    history = build_history(store, history_limit)
    return report_dict(report, history, str(store.path), store.store_usage())


def dumps(document: dict[str, Any]) -> str:
    """Strict JSON (no NaN / Infinity), UTF-8 text, stable key order."""
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_report(
    store: ReportSource, path: Path | str, gate_id: str | None = None, history_limit: int = 50
) -> Path:
    """Write :func:`build_json_report` to ``path`` (parents created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = dumps(build_json_report(store, gate_id, history_limit))
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
