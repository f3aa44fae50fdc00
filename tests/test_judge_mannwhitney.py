"""The statistical judge on synthetic samples with known answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pytest_perfsig.judges import judge
from pytest_perfsig.judges.mannwhitney import failure_proportions, hodges_lehmann, mann_whitney
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.monspec import Comparison, SignatureEntry
from pytest_perfsig.verdict import Subject
from pytest_perfsig.windows import Measurement, MetricQuery, Window

RNG = np.random.default_rng(2026)


def measurement(metric: str, observations: Any, value: float | None = None) -> Measurement:
    parsed, agg = parse_metric(metric), parse_aggregate("avg")
    assert parsed is not None and agg is not None
    obs = np.asarray(observations, dtype=float)
    query = MetricQuery("S", "Staging", None, parsed, agg, Window(0, 10))
    return Measurement(query, float(obs.mean()) if value is None else value, obs.size, obs)


def run_judge(
    source: Any,
    baseline: Any,
    *,
    metric: str = "service.responsetime",
    validate: str = "upper",
    scale: float = 10,
    **config: Any,
) -> Any:
    entry = SignatureEntry.model_validate({"timeseries": metric, "validate": validate})
    comparison = Comparison.model_validate(
        {
            "name": "C",
            "source": "Staging",
            "compare": "Production",
            "scalefactorperc": {"default": scale},
            "judge": {"type": "mannwhitney", **config},
        }
    )
    parsed = parse_metric(metric)
    assert parsed is not None
    subject = Subject(
        entry, comparison, None, parsed.family.unit, parsed.family.kind, parsed.family.abs_tolerance
    )
    verdict = judge(subject, measurement(metric, source), measurement(metric, baseline))
    assert verdict.judge == "mannwhitney"
    return verdict


def test_finds_a_real_shift() -> None:
    verdict = run_judge(RNG.normal(15, 2, 300), RNG.normal(10, 2, 300))
    assert verdict.status == "violation"
    assert verdict.details["p_value"] < 1e-10
    assert 4.5 < verdict.details["shift"] < 5.5
    assert verdict.details["shift_ci_low"] < verdict.details["shift"] < verdict.details["shift_ci_high"]
    assert verdict.details["direction"] == "increase"


def test_noise_is_not_flagged() -> None:
    flagged = sum(
        run_judge(RNG.normal(10, 2, 200), RNG.normal(10, 2, 200)).status == "violation" for _ in range(50)
    )
    assert flagged == 0


def test_tiny_significant_shift_passes_the_effect_floor() -> None:
    # 3 % slower with very little noise: significant, but below the 10 % floor.
    verdict = run_judge(RNG.normal(103, 0.5, 500), RNG.normal(100, 0.5, 500))
    assert verdict.details["p_value"] < 1e-10
    assert verdict.status == "pass"
    assert "within ±10" in verdict.message


def test_equal_samples_pass_with_p_one() -> None:
    verdict = run_judge(np.full(50, 7.0), np.full(50, 7.0))
    assert verdict.status == "pass" and verdict.details["p_value"] == 1.0 and verdict.details["shift"] == 0.0


def test_improvement_is_not_a_violation_of_upper() -> None:
    assert run_judge(RNG.normal(5, 1, 300), RNG.normal(10, 1, 300)).status == "pass"


def test_decrease_direction_for_lower_metrics() -> None:
    verdict = run_judge(
        RNG.normal(100, 5, 300),
        RNG.normal(200, 5, 300),
        metric="service.requestspermin",
        validate="lower",
        scale=20,
    )
    assert verdict.status == "violation" and verdict.details["direction"] == "decrease"
    assert verdict.details["shift"] < -90


def test_either_direction_flags_both_ways() -> None:
    faster = run_judge(RNG.normal(5, 1, 300), RNG.normal(10, 1, 300), direction="either")
    assert faster.status == "violation"


def test_zero_failure_baseline_one_failure_passes() -> None:
    one = np.zeros(1000)
    one[0] = 1
    verdict = run_judge(one, np.zeros(1000), metric="service.failurerate")
    assert verdict.status == "pass" and verdict.details["test"] == "Fisher exact"
    assert verdict.details["shift"] == pytest.approx(0.1)


def test_zero_failure_baseline_many_failures_violates() -> None:
    flags = np.zeros(1000)
    flags[:125] = 1
    verdict = run_judge(flags, np.zeros(1000), metric="service.failurerate")
    assert verdict.status == "violation"
    assert verdict.details["shift"] == pytest.approx(12.5)
    assert verdict.details["p_value"] < 1e-30
    assert verdict.limit == pytest.approx(0.5)  # the absolute tolerance floor, percentage points


def test_zero_latency_baseline_uses_the_absolute_floor() -> None:
    verdict = run_judge(np.full(100, 1.0) + RNG.random(100) * 0.1, np.zeros(100))
    assert verdict.limit == 2.0 and verdict.status == "pass"  # +1 ms is within the 2 ms floor


def test_hodges_lehmann_known_answer() -> None:
    shift, low, high = hodges_lehmann([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], 0.9)
    assert shift == 1.0 and low <= 1.0 <= high


def test_proportions_and_mann_whitney_directly() -> None:
    assert mann_whitney([1, 2, 3], [1, 2, 3], "either", 0.95).p_value > 0.5
    result = failure_proportions([1] * 50 + [0] * 50, [0] * 100, "increase", 0.98)
    assert result.test == "Fisher exact" and result.shift == 50.0 and result.p_value < 1e-15
