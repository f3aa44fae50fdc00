"""The statistical judge: is the source's shift against the baseline both significant and
large enough to matter? Pure (numpy, scipy).

- Latencies and request rates: one-sided (or two-sided) Mann-Whitney U test on the raw
  observations, with the Hodges-Lehmann shift estimate and its confidence interval.
- Failure rates: Fisher's exact test on failed / succeeded counts, with the difference in
  percentage points and its (Wald) confidence interval.

A violation needs both: p < 1 − confidence, *and* a shift beyond the effect-size floor
(Kayenta's semantics: a tiny but significant shift passes). The floor is
max(absolute tolerance, |baseline centre| × effect size %), the effect size defaulting to
the entry's scale factor, so both judges share the tolerance a monspec states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..metrics import MetricKind
from ..monspec import JudgeConfig, SignatureEntry
from ..verdict import Subject, Verdict, fmt, measured_fields, subject_fields
from ..windows import Measurement
from .scalefactor import resolve_tolerance

NAME = "mannwhitney"

MAX_PAIRS_SIDE = 2000  # Hodges-Lehmann on at most 2000 × 2000 pairs (a seeded subsample)


@dataclass(frozen=True)
class ShiftTest:
    test: str
    p_value: float
    shift: float  # source − baseline: Hodges-Lehmann location shift, or difference in pp
    ci_low: float
    ci_high: float


def hodges_lehmann(source: Any, baseline: Any, confidence: float) -> tuple[float, float, float]:
    """Median of all pairwise differences source − baseline, with the distribution-free
    confidence interval from the ranks of those differences (normal approximation)."""
    x = _subsample(np.asarray(source, dtype=float))
    y = _subsample(np.asarray(baseline, dtype=float))
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    n, m = x.size, y.size
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
    k = min(max(k, 0), diffs.size - 1)
    return float(np.median(diffs)), float(diffs[k]), float(diffs[diffs.size - 1 - k])


def _subsample(values: Any) -> Any:
    if values.size <= MAX_PAIRS_SIDE:
        return values
    return np.random.default_rng(0).choice(values, MAX_PAIRS_SIDE, replace=False)


_ALTERNATIVE = {"increase": "greater", "decrease": "less", "either": "two-sided"}


def mann_whitney(source: Any, baseline: Any, direction: str, confidence: float) -> ShiftTest:
    x, y = np.asarray(source, dtype=float), np.asarray(baseline, dtype=float)
    if np.all(x == x[0]) and np.all(y == x[0]):
        p_value = 1.0  # identical constant samples: no evidence of any shift
    else:
        p_value = float(stats.mannwhitneyu(x, y, alternative=_ALTERNATIVE[direction]).pvalue)  # decision
    shift, low, high = hodges_lehmann(x, y, confidence)
    return ShiftTest("Mann-Whitney U", p_value, shift, low, high)


def failure_proportions(
    source_flags: Any, baseline_flags: Any, direction: str, confidence: float
) -> ShiftTest:
    """Fisher's exact test on the 2×2 table of failed / succeeded requests."""
    fs, ns = int(np.sum(source_flags)), int(np.size(source_flags))
    fc, nc = int(np.sum(baseline_flags)), int(np.size(baseline_flags))
    table = [[fs, ns - fs], [fc, nc - fc]]
    p_value = float(stats.fisher_exact(table, alternative=_ALTERNATIVE[direction]).pvalue)  # decision
    ps, pc = fs / ns, fc / nc
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    half = z * math.sqrt(ps * (1 - ps) / ns + pc * (1 - pc) / nc)
    diff = ps - pc
    return ShiftTest(
        "Fisher exact", p_value, 100 * diff, float(100 * (diff - half)), float(100 * (diff + half))
    )


def direction_of(entry: SignatureEntry, config: JudgeConfig) -> str:
    if config.direction is not None:
        return config.direction
    return "increase" if entry.direction == "upper" else "decrease"  # decision


def judge(subject: Subject, source: Measurement, compare: Measurement | None) -> Verdict:
    """Judge one entry on its raw observations; see the module docstring for the rule.
    Both sides must carry observations (``judges.judge`` falls back to the scale factor
    where they do not)."""
    assert compare is not None and source.observations is not None and compare.observations is not None
    entry, comparison, unit, config = subject.entry, subject.comparison, subject.unit, subject.config
    direction = direction_of(entry, config)
    if subject.kind is MetricKind.FAILURE_RATE:
        result = failure_proportions(source.observations, compare.observations, direction, config.confidence)
        centre = 100.0 * float(np.mean(compare.observations))
    else:
        result = mann_whitney(source.observations, compare.observations, direction, config.confidence)
        centre = float(np.median(compare.observations))
    effect = config.effectsizeperc
    if effect is None:
        effect = comparison.scale_factor(entry.metric_key)
    tolerance = resolve_tolerance(entry, comparison, subject.default_abs_tolerance)
    floor = max(tolerance, abs(centre) * effect / 100.0)  # decision
    alpha = 1.0 - config.confidence  # decision
    significant = result.p_value < alpha  # decision
    up = result.shift > floor and direction in {"increase", "either"}  # decision
    down = -result.shift > floor and direction in {"decrease", "either"}  # decision
    violated = significant and (up or down)  # decision
    shift_text = f"{result.shift:+.3g} {unit} [{result.ci_low:+.3g}, {result.ci_high:+.3g}]"
    verdict_word = "significant" if significant else "not significant"
    relation = "beyond" if (up or down) else "within"
    message = (
        f"{subject.label}: {comparison.source} {fmt(source.value, unit)} vs {comparison.compare} "
        f"{fmt(compare.value, unit)}: shift {shift_text}, {relation} ±{fmt(floor, unit)}; "
        f"{result.test} p={result.p_value:.2g} {verdict_word} at {config.confidence:g}"
    )
    rule = (
        f"mannwhitney ({result.test}, {direction}): p < {alpha:.2g} and shift beyond "
        f"max({fmt(tolerance, unit)} abs, {effect:g}% of {comparison.compare})"
    )
    return Verdict(
        status="violation" if violated else "pass",  # decision
        **subject_fields(subject),
        **measured_fields(source, compare),
        judge=NAME,
        message=message,
        rule=rule,
        limit=floor,
        details={
            "test": result.test,
            "direction": direction,
            "p_value": result.p_value,
            "alpha": alpha,
            "shift": result.shift,
            "shift_ci_low": result.ci_low,
            "shift_ci_high": result.ci_high,
            "confidence": config.confidence,
            "effect_floor": floor,
            "effect_size_perc": effect,
        },
    )
