"""The sequential judge: anytime-valid tests of whether an entry is conclusively outside its
limit (a violation) or conclusively within it (a pass). Pure (numpy, scipy).

The limit is the scale-factor rule's: source vs. m·baseline + c, with m = 1 ± f/100 and
c = ± the absolute tolerance (or a static limit). One test per metric kind, each valid however
often it is looked at (docs/judges.md):

- failure rate ``avg``: a violation by a two-sample e-process on the failed / all counts
  (``evalues.two_rates_log_e``), a pass when the confidence sequences of both rates put the
  source inside the limit;
- latency ``median`` / ``pXX``: confidence sequences for the quantile of each side;
- latency ``avg``: the ordering: an e-process on whether the i-th source request is outside
  m × the i-th baseline request + c more often than not (a sign test);
- request rate and count (``avg``, ``count``, ``sum``, no absolute tolerance): an e-process on
  the share of requests that went to the source (counts of two Poisson streams);
- anything else (min, max, per-second buckets) has no sequential test: today's rule judges it.

A decision needs the evidence at 1/α *and* the fixed rule agreeing on the same samples, so the
sequential verdict never contradicts the number it reports. Undecided, the entry is judged by
its fixed rule and the verdict's details say so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ..metrics import MetricKind
from ..verdict import Subject, Verdict, fmt
from ..windows import Measurement
from . import scalefactor
from .evalues import (
    QuantileSequence,
    bernoulli_bound,
    bernoulli_log_e,
    best_crossing,
    claim_log_e,
    smallest_level,
    two_rates_log_e,
)
from .scalefactor import resolve_tolerance

NAME = "sequential"
DEFAULT_ALPHA = 0.05
MAX_LOG10 = 300.0  # evidence beyond 1e300 is shown as 1e300 (a float holds no more)

Decision = Literal["violation", "pass"]
Fallback = Callable[[Subject, Measurement, Measurement | None], Verdict]

ORDER = "ordering e-process (sign test on source vs. limit × baseline, request by request)"
QUANTILE = "quantile confidence sequences"
RATES = "two-rate e-process (violation) / rate confidence sequences (pass)"
SPLIT = "request-split e-process (share of requests to the source)"


def which_test(subject: Subject) -> str | None:
    """The sequential test of an entry, or None when it has none (today's rule judges it)."""
    entry, kind = subject.entry, subject.kind
    spec = entry.aggregate_spec
    if kind is MetricKind.LATENCY:
        if spec.name == "avg":
            return ORDER
        if spec.name == "median" or spec.percentile is not None:
            return QUANTILE
        return None
    if kind is MetricKind.FAILURE_RATE:
        return RATES if spec.name == "avg" else None
    if kind in (MetricKind.RATE, MetricKind.COUNT) and spec.name in {"avg", "count", "sum"}:
        tolerance = resolve_tolerance(entry, subject.comparison, subject.default_abs_tolerance)
        return SPLIT if entry.static_limit is None and tolerance == 0 else None
    return None


@dataclass(frozen=True)
class Evidence:
    """Where one look at the data leaves an entry. ``log10_evidence`` is for the violation side
    (against "within"), ``log10_evidence_pass`` for the pass side (against "outside"): the log
    of an e-value, or of 1/p for an anytime-valid p-value; a side decides at log10(1/α)."""

    test: str
    alpha: float
    log10_evidence: float
    log10_evidence_pass: float
    source_samples: int
    compare_samples: int | None
    # Confidence bounds at α of (source − limit) in the metric's unit, where the test has them.
    bound_low: float | None = None
    bound_high: float | None = None

    @property
    def threshold(self) -> float:
        return math.log10(1.0 / self.alpha)  # decision

    @property
    def decision(self) -> Decision | None:
        if self.log10_evidence >= self.threshold:  # decision
            return "violation"  # decision
        if self.log10_evidence_pass >= self.threshold:  # decision
            return "pass"  # decision
        return None

    def details(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "sequential_test": self.test,
            "alpha": self.alpha,
            "threshold": 1.0 / self.alpha,
            "evidence": 10.0 ** min(self.log10_evidence, MAX_LOG10),
            "evidence_pass": 10.0 ** min(self.log10_evidence_pass, MAX_LOG10),
        }
        if self.bound_low is not None and self.bound_high is not None:
            values.update(bound_low=self.bound_low, bound_high=self.bound_high)
        return values


@dataclass(frozen=True)
class Line:
    """The limit as a function of the baseline: m·baseline + c (m = 0: a static limit c), and
    which side of it is outside (+1: above, upper; −1: below, lower)."""

    slope: float
    intercept: float
    sign: int

    @property
    def upper(self) -> bool:
        return self.sign == 1  # decision


def limit_line(subject: Subject) -> Line:
    entry, comparison = subject.entry, subject.comparison
    sign = 1 if entry.direction == "upper" else -1  # decision
    if entry.static_limit is not None:  # decision
        return Line(0.0, entry.static_limit, sign)  # decision
    factor = comparison.scale_factor(entry.metric_key)
    tolerance = resolve_tolerance(entry, comparison, subject.default_abs_tolerance)
    return Line((100.0 + sign * factor) / 100.0, sign * tolerance, sign)  # decision


def evaluate(
    subject: Subject, source: Measurement, compare: Measurement | None, alpha: float
) -> Evidence | None:
    """The evidence both ways on these samples, or None when the entry has no sequential test
    or the samples do not allow one (no observations, no baseline, unequal windows)."""
    test = which_test(subject)
    line = limit_line(subject)
    static = subject.entry.static_limit is not None
    if test is None or source.observations is None or (compare is None and not static):
        return None
    baseline = None if static or compare is None else compare
    if test == SPLIT:
        return _split(source, baseline, line, alpha)
    if baseline is not None and baseline.observations is None:
        return None
    x = np.asarray(source.observations, dtype=float)
    y = None if baseline is None else np.asarray(baseline.observations, dtype=float)
    if test == ORDER:
        return _order(x, y, line, alpha)
    if test == QUANTILE:
        spec = subject.entry.aggregate_spec
        q = 0.5 if spec.percentile is None else spec.percentile / 100.0
        return _quantile(x, y, q, line, alpha)
    return _rates(x, y, line, alpha)


def _log10(log_e: float) -> float:
    """log10 of an e-value from its natural log (−inf for none at all is kept finite)."""
    return max(float(log_e), -1000.0) / math.log(10.0)


def _order(x: Any, y: Any, line: Line, alpha: float) -> Evidence:
    """Pair the i-th source request with the i-th baseline request (each in time order): under
    "within", each source request is outside the limit at most half of the time."""
    n = x.size if y is None else min(x.size, y.size)
    limit = np.full(n, line.intercept) if y is None else line.slope * y[:n] + line.intercept  # decision
    outside = line.sign * (x[:n] - limit)  # decision
    # A request exactly on the limit counts for neither side: not outside, not within.
    e_out = bernoulli_log_e(int(np.sum(outside > 0)), n, 0.5, "greater")  # decision
    e_in = bernoulli_log_e(int(np.sum(outside >= 0)), n, 0.5, "less")  # decision
    compared = None if y is None else int(y.size)
    return Evidence(ORDER, alpha, _log10(e_out), _log10(e_in), int(x.size), compared)


def _quantile(x: Any, y: Any, q: float, line: Line, alpha: float) -> Evidence:
    """Confidence sequences for the source's and the baseline's q-quantiles (each at δ/2, or δ
    for a static limit); the margin source − limit is bounded by interval arithmetic."""
    source = QuantileSequence(x, q)
    baseline = None if y is None else QuantileSequence(y, q)

    def margin(delta: float) -> tuple[float, float]:
        share = delta if baseline is None else delta / 2  # decision
        low, high = source.lower(share), source.upper(share)  # decision
        if baseline is None:
            limits = (line.intercept, line.intercept)  # decision
        else:
            ends = (line.slope * baseline.lower(share), line.slope * baseline.upper(share))  # decision
            limits = (min(ends) + line.intercept, max(ends) + line.intercept)  # decision
        return low - limits[1], high - limits[0]  # decision

    def outside(delta: float) -> bool:
        low, high = margin(delta)
        return low > 0 if line.upper else high < 0  # decision

    def inside(delta: float) -> bool:
        low, high = margin(delta)
        return high <= 0 if line.upper else low >= 0  # decision

    low, high = margin(alpha)
    return Evidence(
        QUANTILE,
        alpha,
        -math.log10(smallest_level(outside)),
        -math.log10(smallest_level(inside)),
        int(x.size),
        None if y is None else int(y.size),
        _finite(low),
        _finite(high),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _rates(x: Any, y: Any, line: Line, alpha: float) -> Evidence:
    """Failure rates as proportions (the limit line is in percent)."""
    ks, ns = int(np.sum(x)), int(x.size)
    slope, intercept = line.slope, line.intercept / 100.0
    out: Literal["greater", "less"] = "greater" if line.upper else "less"  # decision
    within: Literal["greater", "less"] = "less" if line.upper else "greater"  # decision
    if y is None:
        low, high = bernoulli_bound(ks, ns, alpha, "lower"), bernoulli_bound(ks, ns, alpha, "upper")
        return Evidence(
            RATES,
            alpha,
            _log10(claim_log_e(ks, ns, intercept, out)),  # decision
            _log10(claim_log_e(ks, ns, intercept, within)),  # decision
            ns,
            None,
            *_pct(low - intercept, high - intercept),
        )
    kc, nc = int(np.sum(y)), int(y.size)
    e_out = two_rates_log_e(ks, ns, kc, nc, slope, intercept, out)  # decision
    # Within: the source's rate is conclusively on the inside of some t and the baseline's
    # conclusively where the limit is beyond t; each bound at δ/2, so 1/p = best / 2.
    opposite: Literal["greater", "less"] = "less" if within == "greater" else "greater"  # decision

    def source_side(t: float) -> float:
        return claim_log_e(ks, ns, t, within)  # decision

    def baseline_side(t: float) -> float:
        return claim_log_e(kc, nc, (t - intercept) / slope, opposite) if slope > 0 else -math.inf  # decision

    if line.upper:  # decision
        best = best_crossing(source_side, baseline_side)  # decision
    else:
        best = best_crossing(baseline_side, source_side)  # decision
    s_low, s_high = bernoulli_bound(ks, ns, alpha / 2, "lower"), bernoulli_bound(ks, ns, alpha / 2, "upper")
    c_low, c_high = bernoulli_bound(kc, nc, alpha / 2, "lower"), bernoulli_bound(kc, nc, alpha / 2, "upper")
    low = s_low - max(slope * c_low, slope * c_high) - intercept
    high = s_high - min(slope * c_low, slope * c_high) - intercept
    log_e_pass = best - math.log(2.0)  # decision
    return Evidence(RATES, alpha, _log10(e_out), _log10(log_e_pass), ns, nc, *_pct(low, high))


def _pct(low: float, high: float) -> tuple[float, float]:
    return 100.0 * low, 100.0 * high


def _split(source: Measurement, baseline: Measurement | None, line: Line, alpha: float) -> Evidence | None:
    """Requests of two streams over equally long windows: under "within" (rate_s ≥ m·rate_c
    for ``lower``), each request is the source's with probability at least m / (1 + m)."""
    if baseline is None or line.slope <= 0:  # decision
        return None
    if not math.isclose(source.query.window.duration_s, baseline.query.window.duration_s, rel_tol=0.01):
        return None
    ks, n = source.samples, source.samples + baseline.samples
    share = line.slope / (1.0 + line.slope)  # decision
    outside: Literal["greater", "less"] = "greater" if line.upper else "less"  # decision
    inside: Literal["greater", "less"] = "less" if line.upper else "greater"  # decision
    return Evidence(
        SPLIT,
        alpha,
        _log10(bernoulli_log_e(ks, n, share, outside)),  # decision
        _log10(bernoulli_log_e(ks, n, share, inside)),  # decision
        source.samples,
        baseline.samples,
    )


def judge_at(
    subject: Subject,
    source: Measurement,
    compare: Measurement | None,
    alpha: float,
    fallback: Fallback = scalefactor.judge,
) -> Verdict:
    """The verdict at level ``alpha``: the sequential decision when there is one and the fixed
    rule (``fallback``) agrees on these samples, else the fixed rule's verdict, marked undecided."""
    fixed = fallback(subject, source, compare)
    evidence = evaluate(subject, source, compare, alpha)
    if evidence is None or fixed.status not in ("pass", "violation"):  # decision
        return fixed  # decision
    decision = evidence.decision
    details = {**(fixed.details or {}), **evidence.details()}
    if decision is not None and decision == fixed.status:  # decision
        samples = f"{evidence.source_samples}" + (
            f" + {evidence.compare_samples}" if evidence.compare_samples is not None else ""
        )
        side = "outside" if decision == "violation" else "within"
        strength = evidence.log10_evidence if decision == "violation" else evidence.log10_evidence_pass
        note = (
            f"sequential: conclusively {side} after {samples} samples "
            f"(evidence {_power(strength)} ≥ {fmt(1.0 / alpha)})"
        )
        # The status stays the fixed rule's: they agree.
        return _with(fixed, judge=NAME, details={**details, "decision": decision}, note=note)  # decision
    note = (
        f"sequential test undecided (evidence {_power(evidence.log10_evidence)} outside, "
        f"{_power(evidence.log10_evidence_pass)} within, {fmt(1.0 / alpha)} needed): judged by the fixed rule"
    )
    return _with(fixed, details={**details, "decision": "undecided"}, note=note)


def _power(log10_value: float) -> str:
    return f"1e{log10_value:.0f}" if log10_value >= 6 else fmt(10.0**log10_value)


def _with(verdict: Verdict, *, note: str, details: dict[str, Any], **changes: Any) -> Verdict:
    rule = verdict.rule
    if changes.get("judge") == NAME:
        # Appended: the rule still starts with its direction, which the reports read.
        rule = f"{rule} (sequential, α {details['alpha']:.2g})"
    return replace(verdict, message=f"{verdict.message}; {note}", details=details, rule=rule, **changes)


def judge(subject: Subject, source: Measurement, compare: Measurement | None) -> Verdict:
    """One look at the whole window, at the comparison's level (``"sequential": {"alpha"}``,
    default 0.05), with the scale-factor rule for an undecided entry. The gate's monitor uses
    ``judge_at`` with the level split across its checks."""
    sequential = subject.comparison.sequential
    return judge_at(subject, source, compare, sequential.alpha if sequential else DEFAULT_ALPHA)
