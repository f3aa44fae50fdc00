"""The scale-factor judge: the aggregate against the scaled baseline. Pure.

Rules (the original system's intent, with its bugs fixed):
- scale factor f = the comparison's per-metric override, else its ``default``, else 0;
- absolute tolerance a = the entry's ``abstolerance``, else the comparison's per-metric or
  ``default`` value, else the metric's built-in default (see metrics.FAMILIES);
- ``validate: upper``: limit = compare × (1 + f/100) + a, violation if source > limit;
- ``validate: lower``: limit = compare × (1 − f/100) − a, violation if source < limit;
- a static ``_upperlimit`` (upper) or ``_lowerlimit`` (lower) replaces the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..monspec import Comparison, SignatureEntry
from ..verdict import Subject, Verdict, fmt, measured_fields, subject_fields
from ..windows import Measurement

NAME = "scalefactor"


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


def compute_limit(subject: Subject, compare_value: float | None) -> Limit | None:
    """The limit the source value must stay within; None when only a baseline could give it."""
    entry, comparison, unit = subject.entry, subject.comparison, subject.unit
    static = entry.static_limit
    upper = entry.direction == "upper"  # decision
    if static is not None:
        field = "_upperlimit" if upper else "_lowerlimit"
        return Limit(static, f"static {entry.direction} limit ({field})", f"static limit {field}")  # decision
    if compare_value is None:
        return None
    factor = comparison.scale_factor(entry.metric_key)
    tolerance = resolve_tolerance(entry, comparison, subject.default_abs_tolerance)
    sign = 1 if upper else -1  # decision
    # (100 ± f) / 100 rather than 1 ± f/100: 100 × 1.15 must be 115, not 114.99999999999999.
    value = compare_value * (100.0 + sign * factor) / 100.0 + sign * tolerance  # decision
    multiplier = 1 + sign * factor / 100.0
    op = "+" if upper else "−"
    compare_env = comparison.compare
    rule = f"{entry.direction}: {compare_env} × {multiplier:.2f} {op} {fmt(tolerance, unit)} abs"
    explanation = f"{compare_env} {fmt(compare_value, unit)} × {multiplier:.2f} {op} {fmt(tolerance)} abs"
    return Limit(value, rule, explanation)


def judge(subject: Subject, source: Measurement, compare: Measurement | None) -> Verdict:
    """Judge one entry whose source value is known (the compare side may be absent only
    when a static limit applies: without either there is nothing to judge)."""
    common = {**subject_fields(subject), **measured_fields(source, compare), "judge": NAME}
    comparison, unit = subject.comparison, subject.unit
    limit = compute_limit(subject, compare.value if compare is not None else None)
    if limit is None:
        return Verdict(
            status="error",
            message=f"{subject.label}: no baseline value from {comparison.compare} and no static limit",
            **common,
        )
    upper = subject.entry.direction == "upper"  # decision
    violated = source.value > limit.value if upper else source.value < limit.value  # decision
    op = {(True, True): ">", (True, False): "<=", (False, True): "<", (False, False): ">="}[(upper, violated)]
    message = (
        f"{subject.label}: {comparison.source} {fmt(source.value, unit)} {op} limit "
        f"{fmt(limit.value, unit)} ({limit.explanation})"
    )
    return Verdict(
        status="violation" if violated else "pass",  # decision
        message=message,
        rule=limit.rule,
        limit=limit.value,
        **common,
    )
