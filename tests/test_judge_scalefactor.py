"""The verdict rules of the scale-factor judge (judges.scalefactor), with hand-computed numbers,
and the gate outcome of gate.status.decide."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_perfsig.gate.status import decide
from pytest_perfsig.judges import scalefactor
from pytest_perfsig.judges.scalefactor import Limit
from pytest_perfsig.metrics import FAMILIES, parse_aggregate, parse_metric
from pytest_perfsig.monspec import Comparison, SignatureEntry
from pytest_perfsig.verdict import Subject, Verdict, fmt, not_judged
from pytest_perfsig.windows import Measurement, MetricQuery, Window

DT = "com.dynatrace.builtin:"
RT_TOL = FAMILIES["responsetime"].abs_tolerance  # 2.0 ms
FR_TOL = FAMILIES["failurerate"].abs_tolerance  # 0.5 %
RPM_TOL = FAMILIES["requestspermin"].abs_tolerance  # 0.0 req/min


def entry(timeseries: str = "service.responsetime", **fields: Any) -> SignatureEntry:
    return SignatureEntry.model_validate({"timeseries": timeseries, "aggregate": "avg", **fields})


def comparison(**fields: Any) -> Comparison:
    return Comparison.model_validate(
        {"name": "StagingToProduction", "source": "Staging", "compare": "Production", **fields}
    )


def subject(
    e: SignatureEntry, c: Comparison, *, method: str | None, unit: str, default_abs_tolerance: float
) -> Subject:
    return Subject(e, c, method, unit, None, default_abs_tolerance)


def measured(env: str, value: float, samples: int | None, window: Window | None) -> Measurement:
    metric = parse_metric("service.responsetime")
    aggregate = parse_aggregate("avg")
    assert metric is not None and aggregate is not None
    query = MetricQuery("svc", env, None, metric, aggregate, window or Window(0.0, 1.0))
    return Measurement(query, value, samples or 0)


def judge(
    e: SignatureEntry,
    c: Comparison,
    *,
    method: str | None,
    unit: str,
    source_value: float,
    compare_value: float | None,
    default_abs_tolerance: float,
    source_samples: int | None = None,
    compare_samples: int | None = None,
    source_window: Window | None = None,
    compare_window: Window | None = None,
) -> Verdict:
    """The judge, given plain numbers."""
    compare = (
        None if compare_value is None else measured(c.compare, compare_value, compare_samples, compare_window)
    )
    return scalefactor.judge(
        subject(e, c, method=method, unit=unit, default_abs_tolerance=default_abs_tolerance),
        measured(c.source, source_value, source_samples, source_window),
        compare,
    )


def compute_limit(
    e: SignatureEntry, c: Comparison, compare_value: float | None, env: str, unit: str, tolerance: float
) -> Limit | None:
    assert env == c.compare
    return scalefactor.compute_limit(
        subject(e, c, method=None, unit=unit, default_abs_tolerance=tolerance), compare_value
    )


def test_family_defaults_are_what_the_rules_assume() -> None:
    assert (RT_TOL, FR_TOL, RPM_TOL, FAMILIES["requests"].abs_tolerance) == (2.0, 0.5, 0.0, 0.0)
    assert (FAMILIES["responsetime"].unit, FAMILIES["failurerate"].unit) == ("ms", "%")


# ---------------------------------------------------------------------------- scale factor


def test_upper_limit_with_default_scale_factor() -> None:
    # 200 ms × (1 + 25/100) + 2 ms = 252 ms
    e, c = entry(), comparison(scalefactorperc={"default": 25})
    limit = compute_limit(e, c, 200.0, "Production", "ms", RT_TOL)
    assert limit is not None
    assert limit.value == 252.0
    assert limit.rule == "upper: Production × 1.25 + 2 ms abs"
    assert limit.explanation == "Production 200 ms × 1.25 + 2 abs"
    ok = judge(
        e, c, method=None, unit="ms", source_value=251.9, compare_value=200.0, default_abs_tolerance=RT_TOL
    )
    assert (ok.status, ok.limit) == ("pass", 252.0)
    assert (
        ok.message
        == "service.responsetime avg: Staging 252 ms <= limit 252 ms (Production 200 ms × 1.25 + 2 abs)"
    )
    bad = judge(
        e, c, method=None, unit="ms", source_value=252.5, compare_value=200.0, default_abs_tolerance=RT_TOL
    )
    assert bad.status == "violation"
    assert (
        bad.message
        == "service.responsetime avg: Staging 252 ms > limit 252 ms (Production 200 ms × 1.25 + 2 abs)"
    )


def test_lower_limit_with_default_scale_factor() -> None:
    # 600 req/min × (1 − 50/100) − 0 = 300 req/min
    e = entry("service.requestspermin", aggregate="count", validate="lower")
    c = comparison(scalefactorperc={"default": 50})
    limit = compute_limit(e, c, 600.0, "Production", "req/min", RPM_TOL)
    assert limit is not None
    assert limit.value == 300.0
    assert limit.rule == "lower: Production × 0.50 − 0.0 req/min abs"
    bad = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=299.0,
        compare_value=600.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert bad.status == "violation"
    assert bad.message == (
        "service.requestspermin count: Staging 299 req/min < limit 300 req/min "
        "(Production 600 req/min × 0.50 − 0.0 abs)"
    )
    ok = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=301.0,
        compare_value=600.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert ok.status == "pass"
    assert ok.message.startswith("service.requestspermin count: Staging 301 req/min >= limit 300 req/min")


@pytest.mark.parametrize("key", [f"{DT}service.responsetime", "service.responsetime"])
def test_per_metric_scale_factor_override(key: str) -> None:
    c = comparison(scalefactorperc={"default": 10, key: 50})
    assert c.scale_factor("service.responsetime") == 50
    assert c.scale_factor("service.failurerate") == 10
    # 100 × 1.5 + 0 = 150
    limit = compute_limit(entry(), c, 100.0, "Production", "ms", 0.0)
    assert limit is not None and limit.value == 150.0
    # an entry written with the Dynatrace id finds a short key and vice versa
    limit = compute_limit(entry(f"{DT}service.responsetime"), c, 100.0, "Production", "ms", 0.0)
    assert limit is not None and limit.value == 150.0
    # the override of another metric does not apply: 1.0 % × 1.10 + 0 = 1.1 %
    limit = compute_limit(entry("service.failurerate"), c, 1.0, "Production", "%", 0.0)
    assert limit is not None and limit.value == pytest.approx(1.1, abs=1e-12)


def test_lower_per_metric_override_as_in_the_seed() -> None:
    # requestspermin 90 %: Staging may run 10 % of Production's load. 1000 × 0.10 = 100
    e = entry(f"{DT}service.requestspermin", aggregate="count", validate="lower")
    c = comparison(scalefactorperc={"default": 30, f"{DT}service.requestspermin": 90})
    v = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=99.0,
        compare_value=1000.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert v.limit == pytest.approx(100.0, abs=1e-9)
    assert v.status == "violation"
    assert v.rule == "lower: Production × 0.10 − 0.0 req/min abs"


@pytest.mark.parametrize("factors", [{}, {"service.failurerate": 20}])
def test_missing_scale_factor_is_zero(factors: dict[str, float]) -> None:
    c = comparison(scalefactorperc=factors)
    assert c.scale_factor("service.responsetime") == 0
    # 100 × 1.00 + 2 = 102
    v = judge(
        entry(),
        c,
        method=None,
        unit="ms",
        source_value=102.0,
        compare_value=100.0,
        default_abs_tolerance=RT_TOL,
    )
    assert (v.status, v.limit, v.rule) == ("pass", 102.0, "upper: Production × 1.00 + 2 ms abs")
    v = judge(
        entry(),
        c,
        method=None,
        unit="ms",
        source_value=102.5,
        compare_value=100.0,
        default_abs_tolerance=RT_TOL,
    )
    assert v.status == "violation"


def test_scalefactorperc_absent_means_default_zero() -> None:
    c = comparison()
    assert c.scalefactorperc == {"default": 0.0}
    assert c.scale_factor("service.responsetime") == 0.0


# ---------------------------------------------------------------------------- absolute tolerance


def _upper_limit(e: SignatureEntry, c: Comparison) -> float:
    # compare 100 ms, factor 25 % → 125 ms before the tolerance
    limit = compute_limit(e, c, 100.0, "Production", "ms", RT_TOL)
    assert limit is not None
    return limit.value


def test_abstolerance_entry_beats_comparison() -> None:
    c = comparison(scalefactorperc={"default": 25}, abstolerance={"default": 3, "service.responsetime": 5})
    assert _upper_limit(entry(abstolerance=7), c) == 132.0


def test_abstolerance_entry_zero_is_not_missing() -> None:
    c = comparison(scalefactorperc={"default": 25}, abstolerance={"default": 3, "service.responsetime": 5})
    assert _upper_limit(entry(abstolerance=0), c) == 125.0


@pytest.mark.parametrize("key", ["service.responsetime", f"{DT}service.responsetime"])
def test_abstolerance_comparison_per_metric_beats_default(key: str) -> None:
    c = comparison(scalefactorperc={"default": 25}, abstolerance={"default": 3, key: 5})
    assert c.abs_tolerance("service.responsetime") == 5
    assert _upper_limit(entry(), c) == 130.0


def test_abstolerance_comparison_default_beats_family_default() -> None:
    c = comparison(scalefactorperc={"default": 25}, abstolerance={"default": 3, "service.failurerate": 9})
    assert _upper_limit(entry(), c) == 128.0


def test_abstolerance_comparison_zero_beats_family_default() -> None:
    c = comparison(scalefactorperc={"default": 25}, abstolerance={"service.responsetime": 0})
    assert _upper_limit(entry(), c) == 125.0


def test_abstolerance_family_default_last() -> None:
    c = comparison(scalefactorperc={"default": 25})
    assert _upper_limit(entry(), c) == 125.0 + RT_TOL == 127.0


def test_abstolerance_is_subtracted_for_lower() -> None:
    # 600 × 0.5 − 10 = 290
    e = entry("service.requestspermin", aggregate="count", validate="lower", abstolerance=10)
    limit = compute_limit(e, comparison(scalefactorperc={"default": 50}), 600.0, "Production", "req/min", 0.0)
    assert limit is not None
    assert limit.value == 290.0
    assert limit.rule == "lower: Production × 0.50 − 10 req/min abs"


# ---------------------------------------------------------------------------- the limit itself


def test_equality_at_the_upper_limit_passes() -> None:
    # 80 × 1.25 + 2 = 102, exactly representable
    e, c = entry(), comparison(scalefactorperc={"default": 25})
    v = judge(
        e, c, method=None, unit="ms", source_value=102.0, compare_value=80.0, default_abs_tolerance=RT_TOL
    )
    assert v.limit == 102.0
    assert v.status == "pass"
    assert " <= limit " in v.message
    above = judge(
        e,
        c,
        method=None,
        unit="ms",
        source_value=102.000001,
        compare_value=80.0,
        default_abs_tolerance=RT_TOL,
    )
    assert above.status == "violation"


def test_equality_at_the_lower_limit_passes() -> None:
    # 400 × 0.75 − 0 = 300
    e = entry("service.requestspermin", aggregate="count", validate="lower")
    c = comparison(scalefactorperc={"default": 25})
    v = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=300.0,
        compare_value=400.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert v.limit == 300.0
    assert v.status == "pass"
    assert " >= limit " in v.message
    below = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=299.999999,
        compare_value=400.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert below.status == "violation"


def test_source_equal_to_the_computed_limit_passes_both_ways() -> None:
    for validate, compare in (("upper", 123.4), ("lower", 567.8)):
        e = entry(validate=validate)
        c = comparison(scalefactorperc={"default": 17})
        limit = compute_limit(e, c, compare, "Production", "ms", RT_TOL)
        assert limit is not None
        v = judge(
            e,
            c,
            method=None,
            unit="ms",
            source_value=limit.value,
            compare_value=compare,
            default_abs_tolerance=RT_TOL,
        )
        assert v.status == "pass", v.message


def test_equality_at_a_decimal_upper_limit_passes() -> None:
    e, c = entry(), comparison(scalefactorperc={"default": 15})
    v = judge(
        e, c, method=None, unit="ms", source_value=115.0, compare_value=100.0, default_abs_tolerance=0.0
    )
    assert v.status == "pass", v.message


def test_equality_at_a_decimal_lower_limit_passes() -> None:
    e = entry("service.requestspermin", aggregate="count", validate="lower")
    c = comparison(scalefactorperc={"default": 70})
    v = judge(
        e, c, method=None, unit="req/min", source_value=3.0, compare_value=10.0, default_abs_tolerance=0.0
    )
    assert v.status == "pass", v.message


# ---------------------------------------------------------------------------- static limits


def test_static_upper_limit_replaces_comparison_and_ignores_lower() -> None:
    e = entry(validate="upper", _upperlimit=100, _lowerlimit=50)
    c = comparison(scalefactorperc={"default": 30})
    # the comparison would allow 10 × 1.3 + 2 = 15 ms; the static limit allows 100 ms
    at = judge(
        e, c, method=None, unit="ms", source_value=100.0, compare_value=10.0, default_abs_tolerance=RT_TOL
    )
    assert (at.status, at.limit, at.rule) == ("pass", 100.0, "static upper limit (_upperlimit)")
    assert at.message == "service.responsetime avg: Staging 100 ms <= limit 100 ms (static limit _upperlimit)"
    assert at.compare_value == 10.0
    over = judge(
        e, c, method=None, unit="ms", source_value=100.5, compare_value=10.0, default_abs_tolerance=RT_TOL
    )
    assert over.status == "violation"
    assert (
        over.message == "service.responsetime avg: Staging 100 ms > limit 100 ms (static limit _upperlimit)"
    )
    # below _lowerlimit does not matter for validate: upper
    low = judge(
        e, c, method=None, unit="ms", source_value=40.0, compare_value=10.0, default_abs_tolerance=RT_TOL
    )
    assert low.status == "pass"


def test_static_lower_limit_replaces_comparison_and_ignores_upper() -> None:
    e = entry("service.requestspermin", aggregate="count", validate="lower", _upperlimit=100, _lowerlimit=50)
    c = comparison(scalefactorperc={"default": 30})
    under = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=49.0,
        compare_value=10.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert (under.status, under.limit, under.rule) == ("violation", 50.0, "static lower limit (_lowerlimit)")
    assert under.message == (
        "service.requestspermin count: Staging 49 req/min < limit 50 req/min (static limit _lowerlimit)"
    )
    at = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=50.0,
        compare_value=10.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert at.status == "pass"
    # above _upperlimit does not matter for validate: lower
    high = judge(
        e,
        c,
        method=None,
        unit="req/min",
        source_value=500.0,
        compare_value=10.0,
        default_abs_tolerance=RPM_TOL,
    )
    assert high.status == "pass"


def test_only_the_other_static_limit_means_the_comparison_applies() -> None:
    e = entry(validate="upper", _lowerlimit=50)  # upper entry, only a lower static limit
    c = comparison(scalefactorperc={"default": 25})
    v = judge(
        e, c, method=None, unit="ms", source_value=130.0, compare_value=100.0, default_abs_tolerance=RT_TOL
    )
    assert (v.status, v.limit) == ("violation", 127.0)
    missing = judge(
        e, c, method=None, unit="ms", source_value=1.0, compare_value=None, default_abs_tolerance=RT_TOL
    )
    assert missing.status == "error"


def test_static_limit_is_judged_without_compare_value() -> None:
    e = entry(_upperlimit=100)
    c = comparison(scalefactorperc={"default": 30})
    limit = compute_limit(e, c, None, "Production", "ms", RT_TOL)
    assert limit is not None and limit.value == 100.0
    ok = judge(
        e, c, method=None, unit="ms", source_value=99.0, compare_value=None, default_abs_tolerance=RT_TOL
    )
    assert (ok.status, ok.compare_value, ok.limit) == ("pass", None, 100.0)
    bad = judge(
        e, c, method=None, unit="ms", source_value=101.0, compare_value=None, default_abs_tolerance=RT_TOL
    )
    assert bad.status == "violation"


def test_no_compare_value_and_no_static_limit_is_an_error() -> None:
    e, c = entry(aggregate="p90"), comparison(scalefactorperc={"default": 30})
    assert compute_limit(e, c, None, "Production", "ms", RT_TOL) is None
    v = judge(
        e,
        c,
        method=None,
        unit="ms",
        source_value=50.0,
        compare_value=None,
        default_abs_tolerance=RT_TOL,
        source_samples=120,
    )
    assert v.status == "error"
    assert v.message == "service.responsetime p90: no baseline value from Production and no static limit"
    assert (v.limit, v.source_value, v.source_samples, v.rule) == (None, 50.0, 120, "")


# ---------------------------------------------------------------------------- zero baseline, message format


def test_zero_failure_baseline_one_failure_in_a_thousand_passes() -> None:
    e, c = entry("service.failurerate"), comparison(scalefactorperc={"default": 30})
    source = 100.0 * 1 / 1000  # 0.1 %
    v = judge(
        e, c, method=None, unit="%", source_value=source, compare_value=0.0, default_abs_tolerance=FR_TOL
    )
    assert (v.status, v.limit) == ("pass", 0.5)
    assert (
        v.message
        == "service.failurerate avg: Staging 0.1 % <= limit 0.5 % (Production 0.0 % × 1.30 + 0.5 abs)"
    )


def test_zero_failure_baseline_twelve_and_a_half_percent_fails() -> None:
    e, c = entry("service.failurerate"), comparison(scalefactorperc={"default": 30})
    v = judge(e, c, method=None, unit="%", source_value=12.5, compare_value=0.0, default_abs_tolerance=FR_TOL)
    assert v.status == "violation"
    assert (
        v.message
        == "service.failurerate avg: Staging 12.5 % > limit 0.5 % (Production 0.0 % × 1.30 + 0.5 abs)"
    )


def test_message_of_the_issue_example() -> None:
    e = entry(f"{DT}service.failurerate")
    c = comparison(scalefactorperc={"default": 30}, abstolerance={"service.failurerate": 0.5})
    v = judge(
        e,
        c,
        method=None,
        unit="%",
        source_value=48.9,
        compare_value=0.0,
        default_abs_tolerance=FR_TOL,
        source_samples=1000,
        compare_samples=2000,
        source_window=Window(1.0, 2.0),
        compare_window=Window(3.0, 4.0),
    )
    assert (
        v.message
        == "service.failurerate avg: Staging 48.9 % > limit 0.5 % (Production 0.0 % × 1.30 + 0.5 abs)"
    )
    assert v.status == "violation"
    assert v.rule == "upper: Production × 1.30 + 0.5 % abs"
    assert v.to_record() == {
        "status": "violation",
        "metric": "service.failurerate",
        "aggregate": "avg",
        "method": None,
        "unit": "%",
        "source_env": "Staging",
        "compare_env": "Production",
        "message": v.message,
        "rule": v.rule,
        "source_value": 48.9,
        "compare_value": 0.0,
        "limit": 0.5,
        "source_samples": 1000,
        "compare_samples": 2000,
        "source_window": {"start": 1.0, "end": 2.0},
        "compare_window": {"start": 3.0, "end": 4.0},
        "baseline": None,
        "comparison": "StagingToProduction",
        "judge": "scalefactor",
        "details": None,
    }
    assert Verdict.from_record(v.to_record()) == v
    assert v.label == "service.failurerate avg"


def test_servicemethod_label_prefix() -> None:
    e = entry(f"{DT}servicemethod.failurerate")
    c = comparison(scalefactorperc={"default": 30})
    v = judge(
        e,
        c,
        method="/api/invoke",
        unit="%",
        source_value=48.9,
        compare_value=0.0,
        default_abs_tolerance=FR_TOL,
    )
    assert v.message == (
        "/api/invoke servicemethod.failurerate avg: Staging 48.9 % > limit 0.5 % "
        "(Production 0.0 % × 1.30 + 0.5 abs)"
    )
    assert v.label == "/api/invoke servicemethod.failurerate avg"
    assert v.method == "/api/invoke"
    err = judge(
        e,
        c,
        method="/api/invoke",
        unit="%",
        source_value=1.0,
        compare_value=None,
        default_abs_tolerance=FR_TOL,
    )
    assert err.message.startswith("/api/invoke servicemethod.failurerate avg: no baseline value")


def test_not_judged() -> None:
    e = SignatureEntry.model_validate(
        {"smartscape": "toRelationships:calls", "aggregate": "count", "validate": "lower"}
    )
    v = not_judged(
        subject(e, comparison(), method=None, unit="", default_abs_tolerance=0.0),
        "skipped",
        "no topology",
        source_window=Window(1.0, 2.0),
    )
    assert (v.status, v.metric, v.message, v.source_window) == (
        "skipped",
        "smartscape.toRelationships:calls",
        "smartscape.toRelationships:calls count: no topology",
        Window(1.0, 2.0),
    )


# ---------------------------------------------------------------------------- gate status


def verdict(status: str) -> Verdict:
    return Verdict(
        status=status,
        metric="service.responsetime",
        aggregate="avg",
        method=None,  # type: ignore[arg-type]
        unit="ms",
        source_env="Staging",
        compare_env="Production",
        message=status,
    )


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pass"], "pass"),
        (["pass", "skipped"], "pass"),
        (["pass", "violation"], "violation"),
        (["violation", "skipped"], "violation"),
        (["pass", "violation", "error"], "error"),
        (["error", "pass"], "error"),
        (["skipped"], "error"),
        (["skipped", "skipped"], "error"),
        ([], "error"),
    ],
)
def test_gate_status(statuses: list[str], expected: str) -> None:
    outcome = decide([verdict(s) for s in statuses], planned=len(statuses), selected=len(statuses))
    assert outcome.status == expected
    assert outcome.judged == len(statuses)
    assert outcome.counts["pass"] == statuses.count("pass")


def test_gate_status_gate_problem_is_error() -> None:
    for statuses in (["pass"], ["violation"], ["pass", "pass"]):
        outcome = decide(
            [verdict(s) for s in statuses], planned=2, selected=2, gate_problems=["locust exited with 1"]
        )
        assert outcome.status == "error"
        assert outcome.problems[0] == "locust exited with 1"


def test_gate_outcome_partial_and_problems_worst_first() -> None:
    outcome = decide([verdict("pass"), verdict("violation"), verdict("error")], planned=5, selected=3)
    assert outcome.partial
    assert outcome.status == "error"
    assert outcome.problems == ["error", "violation"]
    assert not decide([verdict("pass")], planned=1, selected=1).partial
    assert decide([verdict("skipped")], planned=1, selected=1).problems == [
        "nothing was judged: every selected check was skipped"
    ]


# ---------------------------------------------------------------------------- fmt


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (None, "ms", "n/a"),
        (0, "", "0.0"),
        (0.0, "%", "0.0 %"),
        (48.9, "%", "48.9 %"),
        (12.3456, "ms", "12.3 ms"),
        (100, "ms", "100 ms"),
        (0.5, "", "0.5"),
        (-3.14159, "", "-3.14"),
        (0.01, "%", "0.01 %"),
        (0.001234, "ms", "1.23e-03 ms"),
        (999.4, "ms", "999 ms"),
        (1000, "req", "1000 req"),
        (1234.56, "ms", "1235 ms"),
        (2_500_000.0, "req", "2500000 req"),
    ],
)
def test_fmt(value: float | None, unit: str, expected: str) -> None:
    assert fmt(value, unit) == expected


def test_fmt_just_below_one_thousand_has_no_exponent() -> None:
    assert fmt(999.6, "ms") == "1000 ms"
