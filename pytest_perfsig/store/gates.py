"""Gates and their verdicts: a gate row per gate run (status and summary once it finished),
and one verdict row per judged check, its naming fields, windows and values in columns beside
the full record (``Verdict.to_record()``)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..verdict import Verdict
from .database import Database

_GATE_COLUMNS = ("gate_id", "monspec", "stage", "build", "started_at", "ended_at", "status", "summary")
_VERDICT_FIELDS = frozenset(Verdict.__dataclass_fields__)


class GateOutcomeLike(Protocol):
    """What the store keeps of a gate's outcome (``gate.status.GateOutcome``)."""

    @property
    def status(self) -> str: ...
    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def problems(self) -> list[str]: ...
    @property
    def planned(self) -> int: ...
    @property
    def selected(self) -> int: ...
    @property
    def judged(self) -> int: ...


@dataclass(frozen=True)
class GateRecord:
    """One gate: what it ran, when, and — once finished — its status (decided by
    ``gate.status``) and summary (counts, problems, planned / selected / judged checks)."""

    gate_id: str
    monspec: str
    stage: str
    build: str | None
    started_at: float
    ended_at: float | None
    status: str  # "running" until the gate finished
    summary: dict[str, Any] = field(default_factory=dict)
    # Columns a later schema added that this version does not know, by name.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Why the gate did not pass, worst first (empty for a pass or a running gate)."""
        problems = self.summary.get("problems")
        return [str(p) for p in problems] if isinstance(problems, list) else []


@dataclass(frozen=True)
class StoredVerdict:
    """One stored verdict and where it belongs."""

    gate_id: str
    check_id: str
    service: str | None
    verdict: Verdict
    # The record as stored: keys a later version added pass through (see ``extras``).
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def extras(self) -> dict[str, Any]:
        """Record keys the current Verdict does not define."""
        return {k: v for k, v in self.record.items() if k not in _VERDICT_FIELDS}


def _summary(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"text": str(text)}
    return value if isinstance(value, dict) else {"value": value}


def _number(value: Any) -> float | None:
    """A value for a REAL column: finite numbers only (NaN would read back as NULL anyway)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _window_columns(window: Any) -> tuple[float | None, float | None]:
    return (None, None) if window is None else (float(window.start), float(window.end))


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def _record_json(record: dict[str, Any]) -> str:
    # NaN and ±inf are written as Python's json reads them back: a judge may produce them.
    return json.dumps(record, default=_plain)


class GateTables(Database):
    """The ``gates`` and ``verdicts`` tables."""

    def create_gate(self, gate_id: str, monspec: str, stage: str, build: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO gates (gate_id, monspec, stage, build, started_at, status) "
                "VALUES (?, ?, ?, ?, ?, 'running')",
                (gate_id, monspec, stage, build, time.time()),
            )

    def finish_gate(self, gate_id: str, outcome: GateOutcomeLike) -> None:
        """Record the gate's outcome as ``gate.status`` decided it."""
        summary = {
            "counts": outcome.counts,
            "problems": outcome.problems or None,
            "planned": outcome.planned,
            "selected": outcome.selected,
            "judged": outcome.judged,
        }
        with self._transaction() as db:
            db.execute(
                "UPDATE gates SET ended_at = ?, status = ?, summary = ? WHERE gate_id = ?",
                (time.time(), outcome.status, json.dumps(summary), gate_id),
            )

    def save_verdict(self, gate_id: str, check_id: str, service: str | None, verdict: Verdict) -> None:
        """Store a check's verdict; judging a check again replaces it."""
        source_start, source_end = _window_columns(verdict.source_window)
        compare_start, compare_end = _window_columns(verdict.compare_window)
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO verdicts (gate_id, check_id, service, comparison, metric, "
                "aggregate, method, judge, status, source_start, source_end, compare_start, compare_end, "
                "source_value, compare_value, limit_value, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    gate_id,
                    check_id,
                    service,
                    verdict.comparison,
                    verdict.metric,
                    verdict.aggregate,
                    verdict.method,
                    verdict.judge,
                    verdict.status,
                    source_start,
                    source_end,
                    compare_start,
                    compare_end,
                    _number(verdict.source_value),
                    _number(verdict.compare_value),
                    _number(verdict.limit),
                    _record_json(verdict.to_record()),
                ),
            )

    # ------------------------------------------------------------------ reads

    def _gate_rows(self, where: str, params: tuple[Any, ...]) -> list[GateRecord]:
        columns = self._columns("gates")
        select = ", ".join(f'"{c}"' for c in columns)
        gates = []
        for row in self._query(f"SELECT {select} FROM gates {where}", params):
            values = dict(zip(columns, row, strict=True))
            gates.append(
                GateRecord(
                    gate_id=str(values["gate_id"]),
                    monspec=str(values["monspec"]),
                    stage=str(values["stage"]),
                    build=values["build"],
                    started_at=float(values["started_at"]),
                    ended_at=values["ended_at"],
                    status=str(values["status"]),
                    summary=_summary(values["summary"]),
                    extra={k: v for k, v in values.items() if k not in _GATE_COLUMNS},
                )
            )
        return gates

    def gates(self, limit: int = 20) -> list[GateRecord]:
        """The newest gates, newest first."""
        return self._gate_rows("ORDER BY started_at DESC, rowid DESC LIMIT ?", (max(0, limit),))

    def gate(self, gate_id: str) -> GateRecord | None:
        found = self._gate_rows("WHERE gate_id = ?", (gate_id,))
        return found[0] if found else None

    def verdicts(self, gate_id: str) -> list[StoredVerdict]:
        """A gate's verdicts in the order they were judged."""
        rows = self._query(
            "SELECT check_id, service, comparison, metric, aggregate, method, judge, status, record "
            "FROM verdicts WHERE gate_id = ? ORDER BY rowid",
            (gate_id,),
        )
        return [_stored_verdict(gate_id, row) for row in rows]


def _stored_verdict(gate_id: str, row: tuple[Any, ...]) -> StoredVerdict:
    check_id, service, comparison, metric, aggregate, method, judge, status, text = row
    try:
        record = json.loads(text)
    except (TypeError, ValueError):
        record = None
    if not isinstance(record, dict):
        record = {"status": "error", "message": f"unreadable verdict record: {text!r}"}
    # The columns fill what a record lacks, so every stored row reads as a Verdict.
    known = {
        "status": status or "error",
        "metric": metric or "",
        "aggregate": aggregate or "",
        "method": method,
        "unit": "",
        "source_env": "",
        "compare_env": "",
        "message": "",
        "comparison": comparison or "",
        "judge": judge or "",
    }
    known.update({k: v for k, v in record.items() if v is not None or k not in known})
    verdict = Verdict.from_record(known)
    return StoredVerdict(gate_id, check_id, service, verdict, record)
