"""The statistical judge's numbers and decisions, checked against independent references.

p-values are compared with scipy called here directly (or worked by hand for tiny samples);
Hodges-Lehmann shifts and intervals use samples whose pairwise differences are known; the
decisions use constructed samples whose right verdict is known.

Hand-worked interval samples: with ``x_i = m·i`` (i < n) and ``y_j = −j`` (j < m) the n·m
differences ``x_i − y_j`` are exactly 0, 1, …, n·m − 1, so the k-th smallest is k, the
estimate is (n·m − 1) / 2 and the interval is [k, n·m − 1 − k] with
``k = floor(n·m/2 − z·sqrt(n·m·(n + m + 1)/12))``, z the two-sided normal quantile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from pytest_perfsig import judges
from pytest_perfsig.judges import mannwhitney
from pytest_perfsig.judges.mannwhitney import (
    MAX_PAIRS_SIDE,
    _subsample,
    failure_proportions,
    hodges_lehmann,
    mann_whitney,
)
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.monspec import Comparison, SignatureEntry
from pytest_perfsig.verdict import Subject, Verdict
from pytest_perfsig.windows import Measurement, MetricQuery, Window

SOURCE_WINDOW = Window(1000.0, 1600.0)
COMPARE_WINDOW = Window(400.0, 1000.0)


def spread(n: int, m: int) -> tuple[list[float], list[float]]:
    """Samples whose pairwise differences are 0 … n·m − 1 (see the module docstring)."""
    return [float(m * i) for i in range(n)], [float(-j) for j in range(m)]


def measurement(metric: str, env: str, observations: Any, window: Window) -> Measurement:
    parsed, agg = parse_metric(metric), parse_aggregate("avg")
    assert parsed is not None and agg is not None
    query = MetricQuery("S", env, None, parsed, agg, window)
    if observations is None:
        return Measurement(query, 1.0, 1)
    obs = np.asarray(observations, dtype=float)
    return Measurement(query, float(obs.mean()), obs.size, obs)


def make_subject(
    metric: str = "service.responsetime",
    validate: str = "upper",
    scale: dict[str, float] | None = None,
    entry_fields: dict[str, Any] | None = None,
    **config: Any,
) -> Subject:
    entry = SignatureEntry.model_validate(
        {"timeseries": metric, "validate": validate, **(entry_fields or {})}
    )
    comparison = Comparison.model_validate(
        {
            "name": "C",
            "source": "Staging",
            "compare": "Production",
            "scalefactorperc": scale if scale is not None else {"default": 10},
            "judge": {"type": "mannwhitney", **config},
        }
    )
    parsed = parse_metric(metric)
    assert parsed is not None
    return Subject(
        entry, comparison, None, parsed.family.unit, parsed.family.kind, parsed.family.abs_tolerance
    )


def run(source: Any, baseline: Any, metric: str = "service.responsetime", **kwargs: Any) -> Verdict:
    subject = make_subject(metric, **kwargs)
    return judges.judge(
        subject,
        measurement(metric, "Staging", source, SOURCE_WINDOW),
        measurement(metric, "Production", baseline, COMPARE_WINDOW),
    )


# Integer latencies 90 … 110 ms (median 100): shifting them by an integer gives a
# Hodges-Lehmann shift of exactly that integer (the differences are symmetric about it).
BASE = np.arange(90.0, 111.0)


# ---------------------------------------------------------------------------- Hodges-Lehmann


@pytest.mark.parametrize(
    ("n", "m", "confidence", "k"),
    [
        # z(0.95) = 1.96, sqrt(100·21/12) = 13.23: 50 − 25.93 = 24.07
        (10, 10, 0.95, 24),
        # z(0.90) = 1.645, sqrt(40·14/12) = 6.83: 20 − 11.24 = 8.76
        (8, 5, 0.90, 8),
        # sqrt(9·7/12) = 2.29: 4.5 − 3.77 = 0.73
        (3, 3, 0.90, 0),
        # 4.5 − 2.33 × 2.29 = −0.84: clamped to the smallest difference
        (3, 3, 0.98, 0),
    ],
)
def test_hodges_lehmann_interval_hand_worked(n: int, m: int, confidence: float, k: int) -> None:
    x, y = spread(n, m)
    shift, low, high = hodges_lehmann(x, y, confidence)
    assert shift == (n * m - 1) / 2
    assert (low, high) == (k, n * m - 1 - k)


def test_hodges_lehmann_single_observations() -> None:
    assert hodges_lehmann([5.0], [3.0], 0.95) == (2.0, 2.0, 2.0)


def test_hodges_lehmann_is_the_median_of_pairwise_differences() -> None:
    # differences of [1, 4, 9] − [0, 2]: 1, −1, 4, 2, 9, 7 → sorted −1, 1, 2, 4, 7, 9: median 3
    assert hodges_lehmann([1.0, 4.0, 9.0], [0.0, 2.0], 0.9)[0] == 3.0


def test_hodges_lehmann_of_unsigned_counts_can_be_negative() -> None:
    # Unsigned integers would wrap around on subtraction: 1 − 5 is not 2**64 − 4.
    shift, low, high = hodges_lehmann(
        np.array([1, 2, 3], dtype=np.uint64), np.array([5, 6, 7], dtype=np.uint64), 0.9
    )
    assert (shift, low, high) == (-4.0, -6.0, -2.0)


def test_subsample_leaves_samples_up_to_the_cap_alone() -> None:
    values = np.arange(float(MAX_PAIRS_SIDE))
    assert _subsample(values) is values


def test_subsample_caps_the_size_without_repeating_values() -> None:
    values = np.arange(5000.0)
    sample = _subsample(values)
    assert sample.shape == (MAX_PAIRS_SIDE,)
    assert np.unique(sample).size == MAX_PAIRS_SIDE
    assert set(sample.tolist()) <= set(values.tolist())


def test_subsample_is_fixed() -> None:
    # Seeded: the same report numbers on every run, on every machine.
    first = _subsample(np.arange(5000.0))
    assert np.array_equal(first, _subsample(np.arange(5000.0)))
    assert first[:6].tolist() == [743.0, 3446.0, 4791.0, 934.0, 649.0, 342.0]


def test_hodges_lehmann_on_large_samples_uses_the_subsample() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(10, 1, MAX_PAIRS_SIDE + 1), rng.normal(0, 1, 5)
    shift, _, _ = hodges_lehmann(x, y, 0.95)
    assert shift == float(np.median(np.subtract.outer(_subsample(x), y)))
    assert shift != float(np.median(np.subtract.outer(x, y)))


# ---------------------------------------------------------------------------- Mann-Whitney


def test_mann_whitney_hand_worked_full_separation() -> None:
    # n = m = 3, every source value above every baseline value: one of C(6, 3) = 20 orderings.
    assert mann_whitney([4, 5, 6], [1, 2, 3], "increase", 0.9).p_value == pytest.approx(1 / 20)
    assert mann_whitney([4, 5, 6], [1, 2, 3], "either", 0.9).p_value == pytest.approx(2 / 20)
    assert mann_whitney([4, 5, 6], [1, 2, 3], "decrease", 0.9).p_value == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("direction", "alternative"), [("increase", "greater"), ("decrease", "less"), ("either", "two-sided")]
)
def test_mann_whitney_p_value_is_scipys(direction: str, alternative: str) -> None:
    x = [3.1, 4.2, 5.0, 6.3, 7.7, 9.0]
    y = [1.0, 2.2, 3.5, 4.0, 6.0]
    result = mann_whitney(x, y, direction, 0.95)
    assert result.test == "Mann-Whitney U"
    assert result.p_value == stats.mannwhitneyu(x, y, alternative=alternative).pvalue
    assert (result.shift, result.ci_low, result.ci_high) == hodges_lehmann(x, y, 0.95)


def test_mann_whitney_one_source_observation() -> None:
    # The single source value is equally likely to rank 1st, 2nd or 3rd: P(above both) = 1/3.
    result = mann_whitney([3.0], [1.0, 2.0], "increase", 0.9)
    assert result.p_value == pytest.approx(1 / 3)
    assert (result.shift, result.ci_low, result.ci_high) == (1.5, 1.0, 2.0)


def test_mann_whitney_constant_source_against_varying_baseline_is_tested() -> None:
    x, y = [5.0] * 5, [1.0, 2.0, 3.0, 4.0, 6.0]
    assert (
        mann_whitney(x, y, "increase", 0.9).p_value == stats.mannwhitneyu(x, y, alternative="greater").pvalue
    )


# ---------------------------------------------------------------------------- Fisher exact


def flags(failed: int, total: int) -> list[int]:
    return [1] * failed + [0] * (total - failed)


@pytest.mark.parametrize(
    ("direction", "alternative"), [("increase", "greater"), ("decrease", "less"), ("either", "two-sided")]
)
def test_failure_proportions_table_and_p_value(direction: str, alternative: str) -> None:
    # 20 of 100 failed against 10 of 100: the table is [[20, 80], [10, 90]].
    result = failure_proportions(flags(20, 100), flags(10, 100), direction, 0.95)
    assert result.test == "Fisher exact"
    assert result.p_value == stats.fisher_exact([[20, 80], [10, 90]], alternative=alternative).pvalue


def test_failure_proportions_shift_and_wald_interval_hand_worked() -> None:
    # 20 % − 10 % = 10 pp; se = sqrt(.2·.8/100 + .1·.9/100) = 0.05; z(0.95) = 1.959964
    result = failure_proportions(flags(20, 100), flags(10, 100), "increase", 0.95)
    assert result.shift == pytest.approx(10.0)
    assert result.ci_low == pytest.approx(10.0 - 100 * 1.959964 * 0.05, abs=1e-5)
    assert result.ci_high == pytest.approx(10.0 + 100 * 1.959964 * 0.05, abs=1e-5)


def test_failure_proportions_unequal_sizes() -> None:
    # 3 of 40 against 30 of 200: 7.5 % − 15 % = −7.5 pp
    result = failure_proportions(flags(3, 40), flags(30, 200), "decrease", 0.9)
    assert result.shift == pytest.approx(-7.5)
    assert result.p_value == stats.fisher_exact([[3, 37], [30, 170]], alternative="less").pvalue
    half = 100 * 1.644854 * np.sqrt(0.075 * 0.925 / 40 + 0.15 * 0.85 / 200)
    assert (result.ci_low, result.ci_high) == pytest.approx((-7.5 - half, -7.5 + half), abs=1e-4)


# ---------------------------------------------------------------------------- decisions


def test_real_shift_is_significant_and_violates() -> None:
    verdict = run(BASE + 15, BASE)
    assert verdict.status == "violation"
    d = verdict.details
    assert d is not None
    assert d["shift"] == 15.0
    assert d["p_value"] == stats.mannwhitneyu(BASE + 15, BASE, alternative="greater").pvalue
    assert d["p_value"] < d["alpha"]
    assert verdict.limit == 10.0  # 10 % of the baseline median 100 ms, above the 2 ms tolerance


def test_shift_exactly_at_the_floor_passes() -> None:
    verdict = run(BASE + 10, BASE)
    assert verdict.details is not None
    assert verdict.details["shift"] == 10.0 == verdict.limit
    assert verdict.details["p_value"] < 0.001
    assert verdict.status == "pass"
    assert "within ±10 ms" in verdict.message


def test_decrease_exactly_at_the_floor_passes_and_beyond_it_violates() -> None:
    at = run(BASE - 10, BASE, metric="service.requestspermin", validate="lower")
    assert at.details is not None and at.details["shift"] == -10.0 == -at.limit
    assert at.status == "pass"
    beyond = run(BASE - 15, BASE, metric="service.requestspermin", validate="lower")
    assert beyond.status == "violation" and beyond.details is not None
    assert beyond.details["direction"] == "decrease"
    assert beyond.details["p_value"] == stats.mannwhitneyu(BASE - 15, BASE, alternative="less").pvalue


def test_large_shift_with_too_few_samples_is_not_significant() -> None:
    # n = m = 2, fully separated: p = 1 / C(4, 2) = 1/6, far above 1 − 0.98.
    verdict = run([200.0, 210.0], [100.0, 105.0])
    assert verdict.details is not None
    assert verdict.details["p_value"] == pytest.approx(1 / 6)
    assert verdict.details["alpha"] == pytest.approx(0.02)
    assert verdict.status == "pass"
    assert "beyond" in verdict.message and "not significant" in verdict.message


def test_p_value_equal_to_alpha_is_not_significant() -> None:
    # One source value above all three baseline values: p = 1/4 exactly; alpha = 1 − 0.75.
    verdict = run([100.0], [1.0, 2.0, 3.0], confidence=0.75)
    assert verdict.details is not None
    assert verdict.details["p_value"] == 0.25 == verdict.details["alpha"]
    assert verdict.status == "pass"


def test_increase_test_does_not_flag_a_decrease() -> None:
    verdict = run(BASE - 15, BASE)
    assert verdict.details is not None and verdict.details["direction"] == "increase"
    assert verdict.details["p_value"] > 0.99
    assert verdict.status == "pass"


def test_decrease_test_does_not_flag_an_increase() -> None:
    verdict = run(BASE + 15, BASE, direction="decrease")
    assert verdict.details is not None and verdict.details["p_value"] > 0.99
    assert verdict.status == "pass"


def test_decrease_from_upper_entry_with_either_violates_and_increase_too() -> None:
    assert run(BASE + 15, BASE, direction="either").status == "violation"
    assert run(BASE - 15, BASE, direction="either").status == "violation"


def test_tiny_significant_shifts_pass_both_ways_with_either() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(100, 0.5, 400)
    for source in (base - 3, base + 3):
        verdict = run(source, base, direction="either")
        assert verdict.details is not None and verdict.details["p_value"] < 1e-10
        assert verdict.status == "pass"


def test_validate_picks_the_direction() -> None:
    assert run(BASE, BASE).details["direction"] == "increase"
    assert run(BASE, BASE, validate="lower").details["direction"] == "decrease"
    assert run(BASE, BASE, validate="lower", direction="either").details["direction"] == "either"


def test_failure_rate_floor_is_relative_to_the_baseline_rate() -> None:
    # Baseline 10 % failed: floor max(0.5 pp, 10 % × 10 %) = 1 pp; 30 % is 20 pp more.
    verdict = run(flags(300, 1000), flags(100, 1000), metric="service.failurerate")
    assert verdict.limit == 1.0
    assert verdict.status == "violation"
    assert verdict.details is not None and verdict.details["shift"] == pytest.approx(20.0)
    p = stats.fisher_exact([[300, 700], [100, 900]], alternative="greater").pvalue
    assert verdict.details["p_value"] == p


def test_effect_size_overrides_the_scale_factor() -> None:
    verdict = run(BASE + 15, BASE, effectsizeperc=20)
    assert verdict.limit == 20.0 and verdict.status == "pass"
    assert verdict.details is not None and verdict.details["effect_size_perc"] == 20


def test_per_metric_scale_factor_sets_the_floor() -> None:
    verdict = run(BASE + 15, BASE, scale={"default": 10, "service.responsetime": 30})
    assert verdict.limit == 30.0 and verdict.status == "pass"


def test_verdict_numbers_and_text() -> None:
    # 10 × 10 samples whose differences are 60 … 159: shift 109.5, k = 19 at 98 %
    # (50 − 2.326 × 13.23 = 19.2), so the interval is [79, 140].
    x = [100.0 + 10 * i for i in range(10)]
    y = [40.0 - j for j in range(10)]
    verdict = run(x, y)
    p = stats.mannwhitneyu(x, y, alternative="greater").pvalue
    assert verdict.status == "violation"
    assert verdict.judge == "mannwhitney"
    assert verdict.limit == pytest.approx(3.55)  # 10 % of the baseline median 35.5
    assert verdict.message == (
        "service.responsetime avg: Staging 145 ms vs Production 35.5 ms: shift +110 ms [+79, +140], "
        f"beyond ±3.55 ms; Mann-Whitney U p={p:.2g} significant at 0.98"
    )
    assert verdict.rule == (
        "mannwhitney (Mann-Whitney U, increase): p < 0.02 and shift beyond max(2 ms abs, 10% of Production)"
    )
    assert verdict.details == {
        "test": "Mann-Whitney U",
        "direction": "increase",
        "p_value": p,
        "alpha": pytest.approx(0.02),
        "shift": 109.5,
        "shift_ci_low": 79.0,
        "shift_ci_high": 140.0,
        "confidence": 0.98,
        "effect_floor": pytest.approx(3.55),
        "effect_size_perc": 10.0,
    }
    assert (verdict.source_value, verdict.compare_value) == (145.0, 35.5)
    assert (verdict.source_samples, verdict.compare_samples) == (10, 10)
    assert (verdict.source_window, verdict.compare_window) == (SOURCE_WINDOW, COMPARE_WINDOW)
    assert (verdict.metric, verdict.aggregate, verdict.unit) == ("service.responsetime", "avg", "ms")
    assert (verdict.source_env, verdict.compare_env, verdict.comparison) == ("Staging", "Production", "C")


def test_not_significant_within_text() -> None:
    verdict = run([101.0, 99.0], [100.0, 100.5])
    assert "within ±10 ms" in verdict.message and "not significant at 0.98" in verdict.message


def test_judge_needs_observations_on_both_sides() -> None:
    subject = make_subject()
    with_obs = measurement("service.responsetime", "Production", BASE, COMPARE_WINDOW)
    without = measurement("service.responsetime", "Staging", None, SOURCE_WINDOW)
    with pytest.raises(AssertionError):
        mannwhitney.judge(subject, without, with_obs)


# ---------------------------------------------------------------------------- dispatch


def test_dispatch_uses_the_statistical_judge_with_observations() -> None:
    assert run(BASE, BASE).judge == "mannwhitney"


@pytest.mark.parametrize("missing", ["source", "compare"])
def test_dispatch_falls_back_to_the_scale_factor_without_observations(missing: str) -> None:
    subject = make_subject()
    source = measurement(
        "service.responsetime", "Staging", None if missing == "source" else BASE, SOURCE_WINDOW
    )
    compare = measurement(
        "service.responsetime", "Production", None if missing == "compare" else BASE, COMPARE_WINDOW
    )
    verdict = judges.judge(subject, source, compare)
    assert verdict.judge == "scalefactor"


def test_dispatch_falls_back_to_the_scale_factor_without_a_baseline() -> None:
    verdict = judges.judge(
        make_subject(), measurement("service.responsetime", "Staging", BASE, SOURCE_WINDOW), None
    )
    assert verdict.judge == "scalefactor" and verdict.status == "error"


def test_dispatch_static_limit_is_judged_by_the_scale_factor() -> None:
    subject = make_subject(entry_fields={"_upperlimit": 50.0})
    verdict = judges.judge(
        subject,
        measurement("service.responsetime", "Staging", BASE, SOURCE_WINDOW),
        measurement("service.responsetime", "Production", BASE, COMPARE_WINDOW),
    )
    assert verdict.judge == "scalefactor" and verdict.limit == 50.0 and verdict.status == "violation"
