"""The report data: one gate's run report and the history of recent gates, built from a store.

Pure apart from reading the store: no formatting for a particular output beyond the number
texts people read (``evaluate.fmt``). The HTML and JSON reports are both views of these
objects.

Stored verdict records are ``{"check_id": ..., **Verdict.to_record()}``; records written by
other versions may miss keys or carry more (``details`` with judge values, ``comparison``...).
Missing known keys read as None, unknown keys are kept as they are (``VerdictRow.extras``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..store.sqlite import SqliteStore
from ..verdict import Verdict, fmt

STATUSES = ("pass", "violation", "error", "skipped")
"""Verdict statuses in the order reports list their counts."""

VERDICT_FIELDS: tuple[str, ...] = tuple(Verdict.__dataclass_fields__)
"""Keys of a stored verdict record (besides ``check_id``), as the current Verdict writes them."""

GATE_FIELDS = ("gate_id", "monspec", "stage", "build", "started_at", "ended_at", "status", "summary")
"""Columns of the ``gates`` table reports know; other columns (``pipeline``...) become extras."""

RUN_FIELDS = (
    "run_id",
    "gate_id",
    "service",
    "env",
    "url",
    "build",
    "locustfile",
    "users",
    "spawn_rate",
    "duration_s",
    "load_model",
    "started_at",
    "ended_at",
    "status",
    "detail",
)
"""Columns of the ``runs`` table reports know; other columns become extras."""

MAX_BUCKETS = 300
"""Time series are per second up to this many buckets, in wider buckets beyond."""

_WINDOW_RE = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\s*[–-]\s*((?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2})\s*UTC\s*$"
)
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.:\-]+")


# ---------------------------------------------------------------------------- small helpers


def finite(value: Any) -> float | None:
    """A number as float when it is a finite int/float (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def format_value(value: Any, unit: str = "") -> str:
    """What a person reads for a stored value: numbers via ``evaluate.fmt``, None as n/a,
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


def parse_window(text: Any) -> tuple[float, float] | None:
    """The (start, end) epoch seconds of a window as ``sources.base.Window`` prints it
    (``2026-11-28 04:09:46–04:09:55 UTC``); the end is widened by the second the text cuts off.
    None for anything else (a baseline of stored runs, an empty value)."""
    if (
        isinstance(text, dict)
        and finite(text.get("start")) is not None
        and finite(text.get("end")) is not None
    ):
        return float(text["start"]), float(text["end"])
    if not isinstance(text, str):
        return None
    match = _WINDOW_RE.match(text)
    if match is None:
        return None
    first, last = match.groups()
    try:
        start = datetime.strptime(first, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        if len(last) == 8:
            last = f"{first[:10]} {last}"
        end = datetime.strptime(last, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return start.timestamp(), end.timestamp() + 1.0


def _columns(store: SqliteStore, table: str) -> list[str]:
    # Local query: the store has no public "describe" method (see the report's module notes).
    return [str(row[1]) for row in store._query(f"PRAGMA table_info({table})")]


def _summary(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"text": str(raw)}
    return value if isinstance(value, dict) else {"value": value}


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class VerdictRow:
    """One stored verdict: every key of the record, and the comparison it belongs to."""

    check_id: str
    comparison: str
    service: str | None
    record: dict[str, Any]

    def get(self, key: str) -> Any:
        return self.record.get(key)

    def text(self, key: str) -> str:
        value = self.record.get(key)
        return "" if value is None else str(value)

    @property
    def status(self) -> str:
        return self.text("status") or "error"

    @property
    def unit(self) -> str:
        return self.text("unit")

    @property
    def metric(self) -> str:
        return self.text("metric")

    @property
    def method(self) -> str | None:
        method = self.record.get("method")
        return None if method in (None, "") else str(method)

    @property
    def label(self) -> str:
        """``/api/invoke servicemethod.responsetime p90``"""
        parts = [self.method or "", self.metric, self.text("aggregate")]
        return " ".join(p for p in parts if p)

    @property
    def extras(self) -> dict[str, Any]:
        """Keys the current Verdict does not define (``details`` included): shown generically."""
        known = {"check_id", "comparison", "service", *VERDICT_FIELDS}
        extras = {k: v for k, v in self.record.items() if k not in known}
        if self.record.get("details") is not None:
            extras = {"details": self.record["details"], **extras}
        return extras

    @property
    def direction(self) -> str | None:
        """``upper`` / ``lower`` when the limit bounds the value itself (the scale rule and
        static limits), None when it is something else (e.g. a judge's effect floor)."""
        match = re.match(r"^(?:static )?(upper|lower)\b", self.text("rule"))
        return match.group(1) if match else None

    def formatted(self, key: str) -> str:
        return format_value(self.record.get(key), self.unit)

    def to_dict(self) -> dict[str, Any]:
        """Every known key (None when the record lacks it), then every other stored key."""
        out: dict[str, Any] = {
            "check_id": self.check_id,
            "comparison": self.comparison,
            "service": self.service,
        }
        out.update({k: self.record.get(k) for k in VERDICT_FIELDS})
        out.update({k: v for k, v in self.record.items() if k not in out})
        return jsonable(out)  # type: ignore[no-any-return]


def split_check_id(
    check_id: str, record: Mapping[str, Any], services: Iterable[str] = ()
) -> tuple[str | None, str]:
    """(service, comparison) of a check id ``[service::]comparison::[method::]metric[agg][#n]``.

    Record keys ``service`` / ``comparison`` win when present; otherwise the known tail
    (method, metric) is cut off the id and a known service prefix is removed.
    """
    service = record.get("service") if isinstance(record.get("service"), str) else None
    comparison = record.get("comparison") if isinstance(record.get("comparison"), str) else None
    if comparison is not None:
        return service, comparison
    rest = check_id
    candidates = [service] if service else sorted(set(services), key=len, reverse=True)
    for name in candidates:
        if name and rest.startswith(f"{name}::"):
            service, rest = name, rest[len(name) + 2 :]
            break
    metric = record.get("metric")
    cut = rest.rfind(f"::{metric}[") if isinstance(metric, str) and metric else -1
    if cut < 0:
        return service, rest.split("::", 1)[0] if "::" in rest else ""
    prefix = rest[:cut]
    method = record.get("method")
    if isinstance(method, str) and method and prefix.endswith(f"::{method}"):
        prefix = prefix[: -len(method) - 2]
    if service is None and "::" in prefix:
        # Several entities and no run telling their names: the comparison is the last part.
        service, prefix = prefix.rsplit("::", 1)
    return service, prefix


@dataclass(frozen=True)
class RunInfo:
    """One load run: every column of the ``runs`` row, and what its samples say."""

    fields: dict[str, Any]
    requests: int
    failures: int
    first_sample_at: float | None
    last_sample_at: float | None

    def get(self, key: str) -> Any:
        return self.fields.get(key)

    @property
    def run_id(self) -> str:
        return str(self.fields.get("run_id"))

    @property
    def env(self) -> str:
        return str(self.fields.get("env") or "")

    @property
    def service(self) -> str:
        return str(self.fields.get("service") or "")

    @property
    def failure_percent(self) -> float | None:
        return 100.0 * self.failures / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: self.fields.get(k) for k in RUN_FIELDS}
        out.update({k: v for k, v in self.fields.items() if k not in out})
        out.update(
            requests=self.requests,
            failures=self.failures,
            first_sample_at=self.first_sample_at,
            last_sample_at=self.last_sample_at,
        )
        return jsonable(out)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class GateInfo:
    """One row of the ``gates`` table; ``extra`` holds columns added later (``pipeline``)."""

    gate_id: str
    monspec: str
    stage: str
    build: str | None
    started_at: float | None
    ended_at: float | None
    status: str
    summary: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pipeline(self) -> str | None:
        value = self.extra.get("pipeline")
        return None if value in (None, "") else str(value)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def load_error(self) -> str | None:
        value = self.summary.get("load_error")
        return None if value in (None, "") else str(value)

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
            "load_error": self.load_error,
            "summary": self.summary,
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return jsonable(out)  # type: ignore[no-any-return]


def _gate_info(row: Mapping[str, Any]) -> GateInfo:
    build = row.get("build")
    return GateInfo(
        gate_id=str(row.get("gate_id")),
        monspec=str(row.get("monspec") or ""),
        stage=str(row.get("stage") or ""),
        build=None if build is None else str(build),
        started_at=finite(row.get("started_at")),
        ended_at=finite(row.get("ended_at")),
        status=str(row.get("status") or "unknown"),
        summary=_summary(row.get("summary")),
        extra={k: v for k, v in row.items() if k not in GATE_FIELDS},
    )


def read_gates(store: SqliteStore, limit: int = 50, gate_id: str | None = None) -> list[GateInfo]:
    """The newest ``limit`` gates (newest first), or the one gate ``gate_id``; every column,
    so that columns added later (``pipeline``) reach the report."""
    columns = _columns(store, "gates")
    select = ", ".join(f'"{c}"' for c in columns)
    if gate_id is not None:
        rows = store._query(f"SELECT {select} FROM gates WHERE gate_id = ?", (gate_id,))
    else:
        rows = store._query(
            f"SELECT {select} FROM gates ORDER BY started_at DESC, rowid DESC LIMIT ?", (max(0, limit),)
        )
    return [_gate_info(dict(zip(columns, row, strict=True))) for row in rows]


def read_runs(store: SqliteStore, gate_id: str) -> list[RunInfo]:
    """The load runs of a gate, in start order, with request and failure counts."""
    columns = _columns(store, "runs")
    select = ", ".join(f'"{c}"' for c in columns)
    rows = store._query(f"SELECT {select} FROM runs WHERE gate_id = ? ORDER BY started_at, rowid", (gate_id,))
    runs = []
    for row in rows:
        fields = dict(zip(columns, row, strict=True))
        run_id = str(fields.get("run_id"))
        requests, failures = store.run_counts(run_id)
        window = store.run_window(run_id)
        runs.append(
            RunInfo(
                fields,
                requests,
                failures,
                window[0] if window else None,
                window[1] if window else None,
            )
        )
    return runs


def read_verdicts(store: SqliteStore, gate_id: str, services: Iterable[str] = ()) -> list[VerdictRow]:
    services = sorted(set(services))
    rows = []
    for record in store.verdicts(gate_id):
        if not isinstance(record, dict):
            record = {"status": "error", "message": f"unreadable verdict record: {record!r}"}
        check_id = str(record.get("check_id", ""))
        service, comparison = split_check_id(check_id, record, services)
        if service is None and len(services) == 1:
            service = services[0]
        rows.append(VerdictRow(check_id, comparison, service, record))
    return rows


def count_statuses(verdicts: Iterable[VerdictRow]) -> dict[str, int]:
    """Verdicts per status: the four known ones always, others as they occur."""
    counts = dict.fromkeys(STATUSES, 0)
    for verdict in verdicts:
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
    return counts


# ---------------------------------------------------------------------------- time series


@dataclass(frozen=True)
class Series:
    """Samples of one side of a comparison, bucketed: per second (wider for long windows).

    ``t`` is each bucket's start in seconds from the window start; lists are parallel;
    latency entries are None for buckets without requests.
    """

    env: str
    label: str
    start: float
    end: float
    bucket_s: float
    t: list[float]
    requests: list[int]
    failures: list[int]
    mean_ms: list[float | None]
    p90_ms: list[float | None]
    samples: int

    @property
    def failure_percent(self) -> list[float | None]:
        return [100.0 * f / n if n else None for f, n in zip(self.failures, self.requests, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(  # type: ignore[no-any-return]
            {
                "env": self.env,
                "label": self.label,
                "start": self.start,
                "end": self.end,
                "bucket_s": self.bucket_s,
                "samples": self.samples,
                "t": self.t,
                "requests": self.requests,
                "failures": self.failures,
                "mean_ms": [None if v is None else round(v, 3) for v in self.mean_ms],
                "p90_ms": [None if v is None else round(v, 3) for v in self.p90_ms],
            }
        )


def bucket_samples(
    ts: Sequence[float] | Any,
    latency_ms: Sequence[float] | Any,
    success: Sequence[bool] | Any,
    start: float,
    end: float,
    max_buckets: int = MAX_BUCKETS,
) -> tuple[float, list[float], list[int], list[int], list[float | None], list[float | None]]:
    """(bucket width, starts, requests, failures, mean latency, p90 latency) over [start, end)."""
    import numpy as np

    duration = max(end - start, 1.0)
    width = 1.0 if duration <= max_buckets else float(math.ceil(duration / max_buckets))
    count = max(1, math.ceil(duration / width))
    ts_a = np.asarray(ts, dtype=float)
    lat_a = np.asarray(latency_ms, dtype=float)
    ok_a = np.asarray(success, dtype=bool)
    index = np.clip(((ts_a - start) // width).astype(int), 0, count - 1) if ts_a.size else ts_a.astype(int)
    requests = np.bincount(index, minlength=count) if ts_a.size else np.zeros(count, dtype=int)
    failures = (
        np.bincount(index, weights=(~ok_a).astype(float), minlength=count) if ts_a.size else np.zeros(count)
    )
    sums = np.bincount(index, weights=lat_a, minlength=count) if ts_a.size else np.zeros(count)
    order = np.argsort(index, kind="stable")
    sorted_index, sorted_lat = index[order], lat_a[order]
    bounds = np.searchsorted(sorted_index, np.arange(count + 1))
    mean: list[float | None] = []
    p90: list[float | None] = []
    for i in range(count):
        n = int(requests[i])
        if n == 0:
            mean.append(None)
            p90.append(None)
            continue
        mean.append(float(sums[i]) / n)
        p90.append(float(np.percentile(sorted_lat[bounds[i] : bounds[i + 1]], 90)))
    return (
        width,
        [i * width for i in range(count)],
        [int(v) for v in requests],
        [round(float(v)) for v in failures],
        mean,
        p90,
    )


def _series(
    env: str, label: str, start: float, end: float, ts: Any, latency: Any, success: Any
) -> Series | None:
    if len(ts) == 0:
        return None
    width, t, requests, failures, mean, p90 = bucket_samples(ts, latency, success, start, end)
    return Series(env, label, start, end, width, t, requests, failures, mean, p90, len(ts))


def _run_samples(store: SqliteStore, run_ids: Sequence[str]) -> list[tuple[str, float, float, int]]:
    # Local query: samples of given runs (see the notes on store methods in the report module).
    marks = ", ".join("?" * len(run_ids))
    rows = store._query(
        f"SELECT run_id, ts, latency_ms, success FROM samples WHERE run_id IN ({marks}) ORDER BY ts",
        list(run_ids),
    )
    return [(str(r[0]), float(r[1]), float(r[2]), int(r[3])) for r in rows]


def series_of_runs(store: SqliteStore, env: str, run_ids: Sequence[str], label: str) -> Series | None:
    """Samples of stored runs; several runs are laid over each other from their own starts."""
    if not run_ids:
        return None
    rows = _run_samples(store, run_ids)
    if not rows:
        return None
    firsts: dict[str, float] = {}
    for run_id, ts, _, _ in rows:
        firsts.setdefault(run_id, ts)
    offsets = [ts - firsts[run_id] for run_id, ts, _, _ in rows]
    start = min(firsts.values())
    duration = max(max(offsets), 1.0)
    shifted = [start + o for o in offsets]
    return _series(
        env, label, start, start + duration, shifted, [r[2] for r in rows], [bool(r[3]) for r in rows]
    )


def series_of_window(
    store: SqliteStore, service: str, env: str, start: float, end: float, label: str
) -> Series | None:
    samples = store.samples(service, env, start, end)
    return _series(env, label, start, end, samples.ts, samples.latency_ms, samples.success)


def window_candidates(
    parsed: tuple[float, float], bases: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Exact windows a printed window (whole seconds) may stand for: each base window (the
    stage's run; the overlap of the gate's runs) moved by whole seconds (shifts, warm-up) to
    fall on the printed seconds; the printed window itself last."""
    found = []
    for first, last in bases:
        start = first + (parsed[0] - math.floor(first))
        end = last + (parsed[1] - 1 - math.floor(last))
        if start < end and (start, end) not in found:
            found.append((start, end))
    return [*found, parsed]


def _count_samples(store: SqliteStore, service: str, env: str, window: tuple[float, float]) -> int:
    # Local query: a count without loading the samples (see the notes on store methods).
    rows = store._query(
        "SELECT COUNT(*) FROM samples WHERE service = ? AND env = ? AND ts >= ? AND ts <= ?",
        (service, env, window[0], window[1]),
    )
    return int(rows[0][0])


def judged_window(
    store: SqliteStore,
    service: str | None,
    env: str,
    window_text: Any,
    bases: Sequence[tuple[float, float]] = (),
    expected_samples: int | None = None,
) -> tuple[float, float] | None:
    """The window a side was judged on: the candidate (see :func:`window_candidates`) that
    holds exactly the samples the verdict counted, else the printed window (a superset by
    less than a second at each end); None when the text is no window."""
    parsed = parse_window(window_text)
    if parsed is None:
        return None
    if service is not None and expected_samples is not None:
        for candidate in window_candidates(parsed, bases):
            if _count_samples(store, service, env, candidate) == expected_samples:
                return candidate
    return parsed


def side_series(
    store: SqliteStore,
    service: str | None,
    env: str,
    window_text: Any,
    gate_runs: Sequence[RunInfo],
    bases: Sequence[tuple[float, float]] = (),
    expected_samples: int | None = None,
) -> Series | None:
    """The samples one side of a comparison was judged on, as far as the store can tell:
    those in its window; the stored runs a baseline names; the gate's own run of that
    environment when no window is recorded."""
    window = judged_window(store, service, env, window_text, bases, expected_samples)
    if window is not None:
        names = [service] if service else sorted({r.service for r in gate_runs})
        for name in names:
            found = series_of_window(store, name, env, window[0], window[1], str(window_text))
            if found is not None:
                return found
        return None
    if isinstance(window_text, str) and window_text:
        named = [t for t in dict.fromkeys(_TOKEN_RE.findall(window_text)) if len(t) > 3]
        run_ids = [t for t in named if store.run(t) is not None]
        if run_ids:
            return series_of_runs(store, env, run_ids, window_text)
    own = [r for r in gate_runs if r.env == env and (service is None or r.service == service)]
    if own:
        return series_of_runs(store, env, [r.run_id for r in own], f"run {', '.join(r.run_id for r in own)}")
    return None


# ---------------------------------------------------------------------------- reports


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

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.verdicts)

    @property
    def status(self) -> str:
        return worst_status(v.status for v in self.verdicts)

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


def worst_status(statuses: Iterable[str]) -> str:
    """error > violation > pass; only skipped verdicts (or none) read as skipped."""
    seen = set(statuses)
    for status in ("error", "violation", "pass"):
        if status in seen:
            return status
    unknown = seen - set(STATUSES)
    if unknown:
        return "error"
    return "skipped"


def _gate_dict(gate: GateInfo, runs: list[RunInfo], verdicts: list[VerdictRow]) -> dict[str, Any]:
    """A gate as the JSON report writes it: its fields, counts, runs and verdicts."""
    return {
        **gate.to_dict(),
        "counts": count_statuses(verdicts),
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
        return count_statuses(self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_gate_dict(self.gate, self.runs, self.verdicts),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def _first_int(values: Iterable[Any]) -> int | None:
    return next((v for v in values if isinstance(v, int) and not isinstance(v, bool)), None)


def _base_windows(runs: Sequence[RunInfo], stage: str, service: str | None) -> list[tuple[float, float]]:
    """Windows the gate's comparison windows start from: the stage's run (first to last
    request) and the overlap of all its runs of the service."""
    spans = [
        (r.env, r.first_sample_at, r.last_sample_at)
        for r in runs
        if (service is None or r.service == service)
        and r.first_sample_at is not None
        and r.last_sample_at is not None
    ]
    bases = [(first, last) for env, first, last in spans if env == stage]
    if spans:
        overlap = (max(s[1] for s in spans), min(s[2] for s in spans))
        if overlap[0] < overlap[1] and overlap not in bases:
            bases.append(overlap)
    return bases


def build_gate_report(
    store: SqliteStore, gate_id: str | None = None, with_series: bool = True
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
    verdicts = read_verdicts(store, gate.gate_id, {r.service for r in runs})
    groups: dict[tuple[str | None, str, str, str], list[VerdictRow]] = {}
    for verdict in verdicts:
        key = (verdict.service, verdict.comparison, verdict.text("source_env"), verdict.text("compare_env"))
        groups.setdefault(key, []).append(verdict)
    comparisons = []
    for (service, name, source_env, compare_env), rows in groups.items():
        source = compare = None
        if with_series:
            source_window = next((v.get("source_window") for v in rows if v.get("source_window")), None)
            compare_window = next((v.get("compare_window") for v in rows if v.get("compare_window")), None)
            bases = _base_windows(runs, gate.stage, service)
            service_level = [v for v in rows if v.method is None]
            source = side_series(
                store,
                service,
                source_env,
                source_window,
                runs,
                bases,
                _first_int(v.get("source_samples") for v in service_level),
            )
            compare = side_series(
                store,
                service,
                compare_env,
                compare_window,
                runs,
                bases,
                _first_int(v.get("compare_samples") for v in service_level),
            )
        comparisons.append(ComparisonReport(name, service, source_env, compare_env, rows, source, compare))
    return GateReport(gate, runs, verdicts, comparisons)


@dataclass(frozen=True)
class HistoryEntry:
    gate: GateInfo
    runs: list[RunInfo]
    verdicts: list[VerdictRow]

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return _gate_dict(self.gate, self.runs, self.verdicts)


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


def build_history(store: SqliteStore, limit: int = 50) -> History:
    entries = []
    for gate in read_gates(store, limit):
        runs = read_runs(store, gate.gate_id)
        verdicts = read_verdicts(store, gate.gate_id, {r.service for r in runs})
        entries.append(HistoryEntry(gate, runs, verdicts))
    return History(limit, entries)
