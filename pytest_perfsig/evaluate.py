"""The verdict rules. Pure: numbers and monspec entries in, a Verdict out.

Rules (the original system's intent, with its bugs fixed):
- scale factor f = the comparison's per-metric override, else its ``default``, else 0;
- absolute tolerance a = the entry's ``abstolerance``, else the comparison's per-metric or
  ``default`` value, else the metric's built-in default (see metrics.FAMILIES);
- ``validate: upper``: limit = compare × (1 + f/100) + a, violation if source > limit;
- ``validate: lower``: limit = compare × (1 − f/100) − a, violation if source < limit;
- a static ``_upperlimit`` (upper) or ``_lowerlimit`` (lower) replaces the comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from .monspec import Comparison, SignatureEntry

Status = Literal["pass", "violation", "error", "skipped"]


@dataclass(frozen=True)
class Verdict:
    """One signature entry judged: every number that led to the status, and why."""

    status: Status
    metric: str
    aggregate: str
    method: str | None
    unit: str
    source_env: str
    compare_env: str
    message: str
    rule: str = ""
    source_value: float | None = None
    compare_value: float | None = None
    limit: float | None = None
    source_samples: int | None = None
    compare_samples: int | None = None
    source_window: str | None = None
    compare_window: str | None = None
    # Judge-specific numbers (test, p-value, shift and its interval...), None for the scale rule.
    details: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        where = f"{self.method} " if self.method else ""
        return f"{where}{self.metric} {self.aggregate}"

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def entry_label(entry: SignatureEntry, method: str | None) -> str:
    """How a verdict message names its entry: ``/api/invoke servicemethod.responsetime p90``."""
    return f"{method + ' ' if method else ''}{entry.metric_key} {entry.aggregate}"


def entry_fields(
    entry: SignatureEntry, comparison: Comparison, method: str | None, unit: str
) -> dict[str, Any]:
    """The Verdict fields that name what was judged, shared by every judge."""
    return dict(
        metric=entry.metric_key,
        aggregate=entry.aggregate,
        method=method,
        unit=unit,
        source_env=comparison.source,
        compare_env=comparison.compare,
    )


def fmt(value: float | None, unit: str = "") -> str:
    """Numbers as people read them: 3 significant digits, no exponent for everyday sizes."""
    if value is None:
        return "n/a"
    if value == 0:
        return f"0.0 {unit}".rstrip()
    magnitude = abs(value)
    if magnitude >= 999.5:  # .3g would switch to an exponent here
        return f"{value:.0f} {unit}".rstrip()
    text = (
        f"{value:.0f}"
        if magnitude >= 1000
        else f"{value:.3g}"
        if magnitude >= 0.01 or value == 0
        else f"{value:.2e}"
    )
    return f"{text} {unit}".rstrip() if unit else text


@dataclass(frozen=True)
class Limit:
    value: float
    rule: str
    explanation: str


def resolve_tolerance(entry: SignatureEntry, comparison: Comparison, default_abs_tolerance: float) -> float:
    """The entry's absolute tolerance, else the comparison's (per metric, then default),
    else the metric's built-in default."""
    if entry.abstolerance is not None:
        return entry.abstolerance
    tolerance = comparison.abs_tolerance(entry.metric_key)
    return default_abs_tolerance if tolerance is None else tolerance


def compute_limit(
    entry: SignatureEntry,
    comparison: Comparison,
    compare_value: float | None,
    compare_env: str,
    unit: str,
    default_abs_tolerance: float,
) -> Limit | None:
    """The limit the source value must stay within; None when only a baseline could give it."""
    static = entry.static_limit
    upper = entry.direction == "upper"
    if static is not None:
        field = "_upperlimit" if upper else "_lowerlimit"
        return Limit(static, f"static {entry.direction} limit ({field})", f"static limit {field}")
    if compare_value is None:
        return None
    factor = comparison.scale_factor(entry.metric_key)
    tolerance = resolve_tolerance(entry, comparison, default_abs_tolerance)
    sign = 1 if upper else -1
    # (100 ± f) / 100 rather than 1 ± f/100: 100 × 1.15 must be 115, not 114.99999999999999.
    value = compare_value * (100.0 + sign * factor) / 100.0 + sign * tolerance
    multiplier = 1 + sign * factor / 100.0
    op = "+" if upper else "−"
    rule = f"{entry.direction}: {compare_env} × {multiplier:.2f} {op} {fmt(tolerance, unit)} abs"
    explanation = f"{compare_env} {fmt(compare_value, unit)} × {multiplier:.2f} {op} {fmt(tolerance)} abs"
    return Limit(value, rule, explanation)


def judge(
    entry: SignatureEntry,
    comparison: Comparison,
    *,
    method: str | None,
    unit: str,
    source_value: float,
    compare_value: float | None,
    default_abs_tolerance: float,
    source_samples: int | None = None,
    compare_samples: int | None = None,
    source_window: str | None = None,
    compare_window: str | None = None,
) -> Verdict:
    """Judge one entry whose source value is known (the compare value may be absent only
    when a static limit applies: without either there is nothing to judge)."""
    common: dict[str, Any] = dict(
        **entry_fields(entry, comparison, method, unit),
        source_value=source_value,
        compare_value=compare_value,
        source_samples=source_samples,
        compare_samples=compare_samples,
        source_window=source_window,
        compare_window=compare_window,
    )
    label = entry_label(entry, method)
    limit = compute_limit(entry, comparison, compare_value, comparison.compare, unit, default_abs_tolerance)
    if limit is None:
        return Verdict(
            status="error",
            message=f"{label}: no baseline value from {comparison.compare} and no static limit",
            **common,
        )
    upper = entry.direction == "upper"
    violated = source_value > limit.value if upper else source_value < limit.value
    op = {(True, True): ">", (True, False): "<=", (False, True): "<", (False, False): ">="}[(upper, violated)]
    message = (
        f"{label}: {comparison.source} {fmt(source_value, unit)} {op} limit "
        f"{fmt(limit.value, unit)} ({limit.explanation})"
    )
    return Verdict(
        status="violation" if violated else "pass",
        message=message,
        rule=limit.rule,
        limit=limit.value,
        **common,
    )


def not_judged(
    entry: SignatureEntry,
    comparison: Comparison,
    *,
    method: str | None,
    unit: str,
    status: Status,
    reason: str,
    **values: Any,
) -> Verdict:
    """A verdict for an entry that could not be judged (error) or does not apply (skipped)."""
    return Verdict(
        status=status,
        **entry_fields(entry, comparison, method, unit),
        message=f"{entry_label(entry, method)}: {reason}",
        **values,
    )
