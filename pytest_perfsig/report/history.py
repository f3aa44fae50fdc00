"""The history of recent gates: each gate with its runs and verdicts, and each check across
the gates that judged it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..store.base import ReportSource
from .gate_report import gate_dict, verdict_counts
from .model import GateInfo, RunInfo, VerdictRow, read_gates, read_runs, read_verdicts


@dataclass(frozen=True)
class HistoryEntry:
    gate: GateInfo
    runs: list[RunInfo]
    verdicts: list[VerdictRow]

    @property
    def counts(self) -> dict[str, int]:
        return verdict_counts(self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return gate_dict(self.gate, self.runs, self.verdicts)


@dataclass(frozen=True)
class CheckHistory:
    """One check id across the history: its values in each gate that judged it."""

    check_id: str
    comparison: str
    label: str
    unit: str
    points: list[tuple[HistoryEntry, VerdictRow]]  # oldest first


@dataclass(frozen=True)
class History:
    """The newest ``limit`` gates (``entries`` newest first) and every check id they judged."""

    limit: int
    entries: list[HistoryEntry]

    @property
    def has_pipeline(self) -> bool:
        return any(e.gate.pipeline for e in self.entries)

    def checks(self, first: Sequence[str] = ()) -> list[CheckHistory]:
        """Per check id, oldest gate first; ids of ``first`` lead, the others follow in the
        order the newest gates list them."""
        order: dict[str, None] = dict.fromkeys(first)
        for entry in self.entries:
            for verdict in entry.verdicts:
                order.setdefault(verdict.check_id, None)
        found: dict[str, list[tuple[HistoryEntry, VerdictRow]]] = {c: [] for c in order}
        for entry in reversed(self.entries):
            for verdict in entry.verdicts:
                found[verdict.check_id].append((entry, verdict))
        result = []
        for check_id, points in found.items():
            if not points:
                continue
            latest = points[-1][1]
            result.append(CheckHistory(check_id, latest.comparison, latest.label, latest.unit, points))
        return result


def build_history(store: ReportSource, limit: int = 50) -> History:
    entries = []
    for gate in read_gates(store, limit):
        entries.append(HistoryEntry(gate, read_runs(store, gate.gate_id), read_verdicts(store, gate.gate_id)))
    return History(limit, entries)
