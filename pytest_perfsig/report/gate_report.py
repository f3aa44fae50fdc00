"""The report of one gate: the gate as stored, its load runs, and its verdicts grouped by
comparison with the samples both sides were judged on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..gate.status import count_statuses, decide
from ..judges.keptn import NAME as KEPTN
from ..store.base import ReportSource
from ..windows import Window
from .model import GateInfo, RunInfo, VerdictRow, read_gates, read_runs, read_verdicts
from .series import Series, side_series


def verdict_counts(verdicts: list[VerdictRow]) -> dict[str, int]:
    """Verdicts per status: the four known ones always, others as they occur."""
    return count_statuses(v.status for v in verdicts)


@dataclass(frozen=True)
class ComparisonReport:
    """The checks of one comparison in one gate, and the samples both sides were judged on."""

    name: str
    service: str | None
    source_env: str
    compare_env: str
    verdicts: list[VerdictRow]
    source: Series | None
    compare: Series | None
    # The stored gate status: a Keptn gate's one comparison is decided by its total score,
    # whose thresholds live with the gate, not with its verdicts.
    gate_status: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return verdict_counts(self.verdicts)

    @property
    def status(self) -> str:
        """What ``gate.status`` decides over this comparison's checks alone."""
        verdicts = [v.verdict for v in self.verdicts]
        if self.gate_status is not None and any(v.judge == KEPTN for v in verdicts):
            return self.gate_status
        return decide(verdicts, planned=len(verdicts), selected=len(verdicts)).status

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparison": self.name,
            "service": self.service,
            "source_env": self.source_env,
            "compare_env": self.compare_env,
            "status": self.status,
            "counts": self.counts,
            "check_ids": [v.check_id for v in self.verdicts],
            "source_series": self.source.to_dict() if self.source else None,
            "compare_series": self.compare.to_dict() if self.compare else None,
        }


def gate_dict(gate: GateInfo, runs: list[RunInfo], verdicts: list[VerdictRow]) -> dict[str, Any]:
    """A gate as the JSON report writes it: its fields, counts, runs and verdicts."""
    return {
        **gate.to_dict(),
        "counts": verdict_counts(verdicts),
        "runs": [r.to_dict() for r in runs],
        "verdicts": [v.to_dict() for v in verdicts],
    }


@dataclass(frozen=True)
class GateReport:
    """Everything the report of one gate shows."""

    gate: GateInfo
    runs: list[RunInfo]
    verdicts: list[VerdictRow]
    comparisons: list[ComparisonReport]

    @property
    def counts(self) -> dict[str, int]:
        return verdict_counts(self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            **gate_dict(self.gate, self.runs, self.verdicts),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def _side(rows: list[VerdictRow], side: str) -> tuple[Window | None, str | None]:
    """The window and baseline a side was judged on. The checks of a comparison share them;
    a check that failed before measuring has none, so the first one recorded counts."""
    for row in rows:
        verdict = row.verdict
        window = verdict.source_window if side == "source" else verdict.compare_window
        baseline = verdict.baseline if side == "compare" else None
        if window is not None or baseline:
            return window, baseline
    return None, None


def build_gate_report(
    store: ReportSource, gate_id: str | None = None, with_series: bool = True
) -> GateReport | None:
    """The report of gate ``gate_id`` (default: the newest gate); None when there is none.

    Raises KeyError for a gate id the store does not hold.
    """
    gates = read_gates(store, 1, gate_id)
    if not gates:
        if gate_id is not None:
            raise KeyError(gate_id)
        return None
    gate = gates[0]
    runs = read_runs(store, gate.gate_id)
    verdicts = read_verdicts(store, gate.gate_id)
    groups: dict[tuple[str | None, str, str, str], list[VerdictRow]] = {}
    for verdict in verdicts:
        key = (verdict.service, verdict.comparison, verdict.text("source_env"), verdict.text("compare_env"))
        groups.setdefault(key, []).append(verdict)
    gate_runs = [r.run for r in runs]
    comparisons = []
    for (service, name, source_env, compare_env), rows in groups.items():
        source = compare = None
        if with_series:
            window, _ = _side(rows, "source")
            source = side_series(store, service, source_env, window, None, gate_runs)
            if compare_env:  # a log rule has no compare side
                window, baseline = _side(rows, "compare")
                compare = side_series(store, service, compare_env, window, baseline, gate_runs)
        comparisons.append(
            ComparisonReport(name, service, source_env, compare_env, rows, source, compare, gate.status)
        )
    return GateReport(gate, runs, verdicts, comparisons)
