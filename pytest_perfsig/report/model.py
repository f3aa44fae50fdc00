"""The rows of a report: gates, their load runs and verdicts as the store holds them, and the
texts people read for their values.

Pure apart from reading the store (through ``store.base.ReportSource``). The gate report
(``gate_report``), the history (``history``) and the time series (``series``) are built from
these rows; the HTML and JSON reports are both views of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..gate.plan import NOT_LOADED
from ..store.base import ReportSource
from ..store.gates import GateRecord, StoredVerdict
from ..store.runs import RunRecord
from ..verdict import Verdict, fmt

VERDICT_FIELDS: tuple[str, ...] = tuple(Verdict.__dataclass_fields__)
"""Keys of a verdict as reports write it (besides ``check_id`` and ``service``)."""

RUN_FIELDS: tuple[str, ...] = tuple(RunRecord.__dataclass_fields__)
"""Keys of a load run as reports write it (before what its samples say)."""


# ---------------------------------------------------------------------------- values


def finite(value: Any) -> float | None:
    """A number as float when it is a finite int/float (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def format_value(value: Any, unit: str = "") -> str:
    """What a person reads for a stored value: numbers via ``verdict.fmt``, None as n/a,
    anything else as its text."""
    if value is None:
        return "n/a"
    number = finite(value)
    if number is not None:
        return fmt(number, unit)
    if isinstance(value, float):  # NaN, ±inf
        return f"{value} {unit}".rstrip()
    return str(value)


def format_time(epoch: Any) -> str:
    """``2026-11-28 04:09:27 UTC``, or an empty text for a missing or invalid time."""
    number = finite(epoch)
    if number is None:
        return ""
    try:
        return datetime.fromtimestamp(number, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return ""


def iso_time(epoch: Any) -> str | None:
    """``2026-11-28T04:09:27.123Z`` (machines), None for a missing or invalid time."""
    number = finite(epoch)
    if number is None:
        return None
    try:
        stamp = datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A value JSON can carry losslessly where possible: non-finite floats become None,
    tuples lists, unknown objects their text, dict keys texts."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return jsonable(item())
    return str(value)


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class VerdictRow:
    """One stored verdict as the reports show it."""

    stored: StoredVerdict

    @property
    def verdict(self) -> Verdict:
        return self.stored.verdict

    @property
    def check_id(self) -> str:
        return self.stored.check_id

    @property
    def service(self) -> str | None:
        return self.stored.service

    @property
    def comparison(self) -> str:
        return self.verdict.comparison

    def get(self, key: str) -> Any:
        """A Verdict field, or another key of the stored record."""
        if key in VERDICT_FIELDS:
            return getattr(self.verdict, key)
        return self.stored.record.get(key)

    def text(self, key: str) -> str:
        value = self.get(key)
        return "" if value is None else str(value)

    @property
    def status(self) -> str:
        return self.verdict.status or "error"

    @property
    def unit(self) -> str:
        return self.text("unit")

    @property
    def metric(self) -> str:
        return self.text("metric")

    @property
    def method(self) -> str | None:
        return self.verdict.method or None

    @property
    def label(self) -> str:
        """``/api/invoke servicemethod.responsetime p90``"""
        parts = [self.method or "", self.metric, self.text("aggregate")]
        return " ".join(p for p in parts if p)

    @property
    def extras(self) -> dict[str, Any]:
        """What the report shows generically: a judge's ``details``, then record keys the
        current Verdict does not define."""
        extras = dict(self.stored.extras)
        if self.verdict.details is not None:
            extras = {"details": self.verdict.details, **extras}
        return extras

    @property
    def direction(self) -> str | None:
        """``upper`` / ``lower`` when the limit bounds the value itself (the scale rule and
        static limits), None when it is something else (e.g. a judge's effect floor)."""
        match = re.match(r"^(?:static )?(upper|lower)\b", self.text("rule"))
        return match.group(1) if match else None

    def formatted(self, key: str) -> str:
        return format_value(self.get(key), self.unit)

    def to_dict(self) -> dict[str, Any]:
        """Every Verdict field (windows as ``{"start", "end"}``), then every other stored key."""
        out: dict[str, Any] = {"check_id": self.check_id, "service": self.service}
        out.update(self.verdict.to_record())
        out.update({k: v for k, v in self.stored.extras.items() if k not in out})
        return jsonable(out)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class RunInfo:
    """One load run, and what its samples say."""

    run: RunRecord
    requests: int
    failures: int
    first_sample_at: float | None
    last_sample_at: float | None

    def get(self, key: str) -> Any:
        return getattr(self.run, key, None)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def env(self) -> str:
        return self.run.env

    @property
    def service(self) -> str:
        return self.run.service

    @property
    def failure_percent(self) -> float | None:
        return 100.0 * self.failures / self.requests if self.requests else None

    @property
    def not_loaded(self) -> bool:
        """An environment the gate judged from its monitoring without sending it load (its
        ``detail`` says which source measured it)."""
        return self.run.status == NOT_LOADED

    def to_dict(self) -> dict[str, Any]:
        return jsonable(  # type: ignore[no-any-return]
            {
                **asdict(self.run),
                "requests": self.requests,
                "failures": self.failures,
                "first_sample_at": self.first_sample_at,
                "last_sample_at": self.last_sample_at,
            }
        )


@dataclass(frozen=True)
class GateInfo:
    """One gate; ``status`` is the one ``gate.status`` decided when the gate finished
    (``running`` for a gate that never did); ``extra`` holds columns added later (``pipeline``)."""

    gate_id: str
    monspec: str
    stage: str
    build: str | None
    started_at: float | None
    ended_at: float | None
    status: str
    summary: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, record: GateRecord) -> GateInfo:
        return cls(
            gate_id=record.gate_id,
            monspec=record.monspec,
            stage=record.stage,
            build=record.build,
            started_at=finite(record.started_at),
            ended_at=finite(record.ended_at),
            status=record.status,
            summary=record.summary,
            problems=record.problems,
            extra=record.extra,
        )

    @property
    def pipeline(self) -> str | None:
        value = self.extra.get("pipeline")
        return None if value in (None, "") else str(value)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gate_id": self.gate_id,
            "monspec": self.monspec,
            "stage": self.stage,
            "build": self.build,
            "pipeline": self.pipeline,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "started_at_iso": iso_time(self.started_at),
            "ended_at_iso": iso_time(self.ended_at),
            "duration_s": self.duration_s,
            "problems": self.problems,
            "summary": self.summary,
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return jsonable(out)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- reading the store


def read_gates(store: ReportSource, limit: int = 50, gate_id: str | None = None) -> list[GateInfo]:
    """The newest ``limit`` gates (newest first), or the one gate ``gate_id``."""
    if gate_id is not None:
        record = store.gate(gate_id)
        return [] if record is None else [GateInfo.of(record)]
    return [GateInfo.of(record) for record in store.gates(limit)]


def read_runs(store: ReportSource, gate_id: str) -> list[RunInfo]:
    """The load runs of a gate, in start order, with request and failure counts."""
    runs = []
    for run in store.gate_runs(gate_id):
        requests, failures = store.run_counts(run.run_id)
        window = store.run_window(run.run_id)
        runs.append(
            RunInfo(run, requests, failures, window[0] if window else None, window[1] if window else None)
        )
    return runs


def read_verdicts(store: ReportSource, gate_id: str) -> list[VerdictRow]:
    """A gate's verdicts in the order it judged them."""
    return [VerdictRow(stored) for stored in store.verdicts(gate_id)]
