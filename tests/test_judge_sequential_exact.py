"""The sequential judge on small, exact cases: every e-value, bound and decision is checked
against a closed form, an independent integral or root, or a boundary constructed to sit
exactly on the limit. No simulation: each test takes milliseconds (the simulations of the
level and coverage are in test_judge_sequential.py)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import pytest
from scipy import integrate, optimize, special

from pytest_perfsig.judges import sequential
from pytest_perfsig.judges.evalues import (
    QUADRATURE_NODES,
    QuantileSequence,
    _best_null,
    _mean_over,
    _prior_mass,
    bernoulli_bound,
    bernoulli_log_e,
    best_crossing,
    claim_log_e,
    smallest_level,
    two_rates_log_e,
)
from pytest_perfsig.judges.sequential import (
    ORDER,
    QUANTILE,
    RATES,
    SPLIT,
    Evidence,
    Line,
    evaluate,
    judge_at,
    limit_line,
    which_test,
)
from pytest_perfsig.metrics import MetricKind
from pytest_perfsig.monspec import Comparison
from pytest_perfsig.verdict import Subject, Verdict, fmt
from pytest_perfsig.windows import Measurement, MetricQuery, Window
from tests.test_judge_sequential import measured, subject

LN10 = math.log(10.0)


# ---------------------------------------------------------------------------- references


def jeffreys_integral(f: Any, lo: float, hi: float) -> float:
    """∫_lo^hi f(θ) π(θ) dθ for Jeffreys' density π(θ) = 1 / (π √(θ(1−θ))), through θ = sin²φ
    (π(θ) dθ = 2/π dφ): a smooth integrand for quad, no Beta functions involved."""
    a, b = math.asin(math.sqrt(lo)), math.asin(math.sqrt(hi))
    value, _ = integrate.quad(lambda phi: f(math.sin(phi) ** 2), a, b, epsabs=0.0, epsrel=1e-12, limit=200)
    return 2.0 / math.pi * value


def jeffreys_mass(lo: float, hi: float) -> float:
    """Jeffreys' prior mass of [lo, hi]: the arcsine distribution, F(θ) = 2/π asin √θ."""
    return 2.0 / math.pi * (math.asin(math.sqrt(hi)) - math.asin(math.sqrt(lo)))


def reference_log_e(k: int, n: int, theta0: float, side: str) -> float:
    """The mixture e-value by its definition: the likelihood ratio against θ0 averaged over the
    alternative side with Jeffreys' prior renormalised to that side."""
    lo, hi = (theta0, 1.0) if side == "greater" else (0.0, theta0)

    def ratio(t: float) -> float:
        return math.exp(special.xlogy(k, t / theta0) + special.xlogy(n - k, (1 - t) / (1 - theta0)))

    return math.log(jeffreys_integral(ratio, lo, hi) / jeffreys_mass(lo, hi))


def loglik(k: int, n: int, p: Any) -> Any:
    return special.xlogy(k, p) + special.xlogy(n - k, 1.0 - p)


def level_at(log_threshold: float) -> float:
    """A level δ whose math.log(1 / δ) is exactly ``log_threshold`` (a float next to e^−t)."""
    below = above = math.exp(-log_threshold)
    for _ in range(1000):
        for candidate in (below, above):
            if math.log(1.0 / candidate) == log_threshold:
                return candidate
        below, above = float(np.nextafter(below, 0.0)), float(np.nextafter(above, 1.0))
    raise AssertionError(f"no float level has log(1/δ) == {log_threshold!r}")


# ---------------------------------------------------------------------------- Bernoulli e-values


def test_one_success_in_one_trial_has_a_closed_form() -> None:
    # k = n = 1, θ0 = ½: ∫_½^1 θ π(θ) dθ = ¼ + 1/(2π) (θ = sin²φ), Π(θ > ½) = ½, the null
    # likelihood ½: E = 1 + 2/π. The lower side and k = 0 follow by symmetry.
    assert float(bernoulli_log_e(1, 1, 0.5, "greater")) == pytest.approx(math.log(1 + 2 / math.pi), abs=1e-12)
    assert float(bernoulli_log_e(1, 1, 0.5, "less")) == pytest.approx(math.log(1 - 2 / math.pi), abs=1e-12)
    assert float(bernoulli_log_e(0, 1, 0.5, "less")) == pytest.approx(math.log(1 + 2 / math.pi), abs=1e-12)
    assert float(bernoulli_log_e(0, 1, 0.5, "greater")) == pytest.approx(math.log(1 - 2 / math.pi), abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "theta0", "side"),
    [
        (3, 10, 0.2, "greater"),
        (3, 10, 0.2, "less"),
        (9, 10, 0.7, "greater"),
        (0, 20, 0.05, "less"),
        (20, 40, 0.9, "less"),
        (14, 30, 0.35, "greater"),
        (1, 25, 0.02, "greater"),
    ],
)
def test_bernoulli_e_value_is_the_mixture_integral(k: int, n: int, theta0: float, side: str) -> None:
    expected = reference_log_e(k, n, theta0, side)
    assert float(bernoulli_log_e(k, n, theta0, side)) == pytest.approx(expected, abs=1e-8)  # type: ignore[arg-type]


def test_bernoulli_e_value_is_vectorised_over_the_count() -> None:
    counts = np.arange(13)
    values = bernoulli_log_e(counts, 12, 0.3, "less")
    assert values.shape == (13,)
    expected = [reference_log_e(int(k), 12, 0.3, "less") for k in counts]
    assert np.allclose(values, expected, atol=1e-8, rtol=0.0)


@pytest.mark.parametrize("theta0", [0.0, 1.0, -0.2, 1.5])
def test_a_boundary_at_zero_or_one_gives_no_evidence(theta0: float) -> None:
    # θ0 = 0 for "greater": the null θ ≤ 0 is contradicted by any success, but the mixture would
    # be infinite for every count, including counts the null could produce (none, for θ = 0).
    for side in ("greater", "less"):
        values = bernoulli_log_e([0, 3, 5], 5, theta0, side)  # type: ignore[arg-type]
        assert values.shape == (3,) and values.dtype == np.float64
        assert np.array_equal(values, np.zeros(3))


def test_an_unknown_side_is_an_error() -> None:
    with pytest.raises(KeyError):
        bernoulli_log_e(1, 2, 0.5, "above")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        bernoulli_bound(1, 2, 0.05, "above")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        two_rates_log_e(1, 10, 1, 10, 1.0, 0.0, "above")  # type: ignore[arg-type]


def test_an_underflowing_tail_is_no_evidence_and_no_warning() -> None:
    # P(Beta(½, 2000½) > ½) is below the smallest double: log 0, quietly −inf.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(bernoulli_log_e(0, 2000, 0.5, "greater")) == -math.inf


def test_claims_outside_the_unit_interval_are_certain_or_impossible() -> None:
    for theta in (0.0, -0.3):
        assert claim_log_e(4, 10, theta, "greater") == math.inf
        assert claim_log_e(4, 10, theta, "less") == -math.inf
    for theta in (1.0, 1.7):
        assert claim_log_e(4, 10, theta, "greater") == -math.inf
        assert claim_log_e(4, 10, theta, "less") == math.inf
    greater, less = claim_log_e(7, 10, 0.3, "greater"), claim_log_e(7, 10, 0.3, "less")
    assert greater == pytest.approx(reference_log_e(7, 10, 0.3, "greater"), abs=1e-8)
    assert less == pytest.approx(reference_log_e(7, 10, 0.3, "less"), abs=1e-8)
    assert greater > 0 > less


# ---------------------------------------------------------------------------- bisections


def test_best_crossing_finds_the_crossing() -> None:
    # t² = 1 − t at t = (√5 − 1)/2, where both are (3 − √5)/2.
    assert best_crossing(lambda t: t * t, lambda t: 1 - t) == pytest.approx((3 - math.sqrt(5)) / 2, abs=1e-12)
    assert best_crossing(lambda t: t, lambda t: 0.8 - t) == pytest.approx(0.4, abs=1e-12)
    # Crossing at 1.5, outside [0, 1]: the best inside is at 1.
    assert best_crossing(lambda t: t, lambda t: 3 - t) == pytest.approx(1.0, abs=1e-12)
    # Crossing at −0.5, outside: the best is at 0.
    assert best_crossing(lambda t: t + 1, lambda t: -t) == pytest.approx(0.0, abs=1e-12)
    assert best_crossing(lambda t: t, lambda t: 5 - t, low=2.0, high=4.0) == pytest.approx(2.5, abs=1e-12)


def test_smallest_level_is_where_the_decision_starts() -> None:
    assert smallest_level(lambda d: False) == 1.0
    assert smallest_level(lambda d: d >= 1.0) == 1.0
    assert smallest_level(lambda d: True) == 1e-12
    assert smallest_level(lambda d: True, floor=1e-3) == 1e-3
    found = smallest_level(lambda d: d >= 0.01)
    assert found == pytest.approx(0.01, rel=1e-9) and found >= 0.01
    strict = smallest_level(lambda d: d > 0.3)
    assert strict == pytest.approx(0.3, rel=1e-9) and strict > 0.3
    assert smallest_level(lambda d: d >= 1e-6, floor=1e-6) == 1e-6


# ---------------------------------------------------------------------------- Bernoulli bounds


@pytest.mark.parametrize(
    ("k", "n", "delta"),
    [(0, 1, 0.05), (1, 1, 0.05), (3, 20, 0.05), (17, 20, 0.01), (0, 1000, 0.05), (1, 10, 0.2), (5, 6, 0.3)],
)
def test_bounds_are_where_the_e_value_reaches_one_over_delta(k: int, n: int, delta: float) -> None:
    threshold = math.log(1 / delta)
    upper, lower = bernoulli_bound(k, n, delta, "upper"), bernoulli_bound(k, n, delta, "lower")
    if k < n:
        root = optimize.brentq(
            lambda t: float(bernoulli_log_e(k, n, t, "less")) - threshold, k / n, 1 - 1e-15, xtol=1e-16
        )
        assert upper == pytest.approx(root, abs=1e-13)
        assert float(bernoulli_log_e(k, n, upper, "less")) >= threshold  # the bound itself is rejected
    else:
        assert upper == 1.0
    if k > 0:
        root = optimize.brentq(
            lambda t: float(bernoulli_log_e(k, n, t, "greater")) - threshold, 1e-15, k / n, xtol=1e-16
        )
        assert lower == pytest.approx(root, abs=1e-13)
        assert float(bernoulli_log_e(k, n, lower, "greater")) >= threshold
    else:
        assert lower == 0.0
    assert lower <= k / n <= upper


def test_bounds_without_data_or_at_the_ends() -> None:
    assert bernoulli_bound(0, 0, 0.05, "upper") == 1.0
    assert bernoulli_bound(0, 0, 0.05, "lower") == 0.0
    assert bernoulli_bound(5, 5, 0.05, "upper") == 1.0
    assert 0.0 < bernoulli_bound(5, 5, 0.05, "lower") < 1.0
    assert bernoulli_bound(0, 5, 0.05, "lower") == 0.0
    assert 0.0 < bernoulli_bound(0, 5, 0.05, "upper") < 1.0


def test_a_mean_whose_e_value_is_exactly_one_over_delta_is_excluded() -> None:
    # The first bisection step looks at ½; at this δ the e-value there is exactly 1/δ, so ½ is
    # rejected (Ville: ≥ 1/δ) and every mean on the other side is not: the bound is ½ itself.
    delta = level_at(float(bernoulli_log_e(0, 5, 0.5, "less")))
    assert bernoulli_bound(0, 5, delta, "upper") == 0.5
    delta = level_at(float(bernoulli_log_e(5, 5, 0.5, "greater")))
    assert bernoulli_bound(5, 5, delta, "lower") == 0.5


# ---------------------------------------------------------------------------- quantile bounds


def reference_quantile_bounds(values: Any, q: float, delta: float) -> tuple[float, float]:
    """From every count 0..n (no window): the lower bound is the smallest count of values below
    the quantile not rejected by the "less" e-process, as an order statistic; the upper the
    largest not rejected by the "greater" one."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    counts = np.arange(n + 1)
    threshold = math.log(1 / delta)
    low_ok = [int(c) for c in counts if float(bernoulli_log_e(int(c), n, q, "less")) < threshold]
    high_ok = [int(c) for c in counts if float(bernoulli_log_e(int(c), n, q, "greater")) < threshold]
    smallest = low_ok[0] if low_ok else n + 1
    largest = high_ok[-1] if high_ok else -1
    lower = -math.inf if smallest < 1 or smallest > n else float(x[smallest - 1])
    upper = math.inf if largest < 0 or largest >= n else float(x[largest])
    return lower, upper


@pytest.mark.parametrize("n", [1, 2, 5, 30, 200])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_quantile_bounds_are_order_statistics_from_the_e_processes(n: int, q: float) -> None:
    values = np.random.default_rng(n).permutation(n) * 1.5 + 3.0
    sequence = QuantileSequence(list(values), q)
    for delta in (0.9, 0.5, 0.05, 1e-3, 1e-6):
        lower, upper = reference_quantile_bounds(values, q, delta)
        assert (sequence.lower(delta), sequence.upper(delta)) == (lower, upper), delta


def test_quantile_bounds_of_a_long_run_use_only_the_counts_near_n_q() -> None:
    values = np.random.default_rng(7).permutation(1500) / 10.0
    sequence = QuantileSequence(values, 0.5)
    for delta in (0.05, 1e-6):
        assert (sequence.lower(delta), sequence.upper(delta)) == reference_quantile_bounds(values, 0.5, delta)
    # Far beyond the levels the window is made for, the crossing lies outside the counts it
    # holds: no bound is claimed rather than a wrong one.
    assert (sequence.lower(1e-250), sequence.upper(1e-250)) == (-math.inf, math.inf)
    assert reference_quantile_bounds(values, 0.5, 1e-250) != (-math.inf, math.inf)


def test_a_count_whose_e_value_is_exactly_one_over_delta_is_rejected() -> None:
    values = np.arange(10.0) + 1.0  # the c-th order statistic is c
    less = bernoulli_log_e(np.arange(11), 10, 0.5, "less")
    greater = bernoulli_log_e(np.arange(11), 10, 0.5, "greater")
    sequence = QuantileSequence(values, 0.5)
    # Count 1 sits exactly at 1/δ: rejected, so at least 2 values lie below the median.
    assert sequence.lower(level_at(float(less[1]))) == 2.0
    # Count 8 exactly at 1/δ: at most 7 values lie below it, the 8th is an upper bound.
    assert sequence.upper(level_at(float(greater[8]))) == 8.0


# ---------------------------------------------------------------------------- two failure rates


def test_the_quadrature_is_a_one_sided_riemann_sum_on_an_even_grid() -> None:
    # h = the posterior's own CDF makes h(F⁻¹(u)) = u: the lower sum over N intervals of [0, 1]
    # is (N − 1) / 2N, the upper (N + 1) / 2N.
    posterior = (3.5, 7.5)

    def cdf(p: Any) -> Any:
        return special.betainc(*posterior, p)

    n = QUADRATURE_NODES
    assert _mean_over(posterior, cdf, lower=True) == pytest.approx((n - 1) / (2 * n), abs=1e-12)
    assert _mean_over(posterior, cdf, lower=False) == pytest.approx((n + 1) / (2 * n), abs=1e-12)
    # A decreasing h: the sums swap sides.
    assert _mean_over(posterior, lambda p: 1 - cdf(p), lower=True) == pytest.approx(
        (n - 1) / (2 * n), abs=1e-12
    )


def reference_two_rates(
    ks: int, ns: int, kc: int, nc: int, slope: float, intercept: float, side: str
) -> float:
    """The two-rate e-value by its definition: the likelihood averaged over the alternative
    region (Jeffreys priors, renormalised: nested quadrature and the arcsine CDF) over the best
    likelihood in the null (a 2-D grid plus the boundary line)."""

    def edge(pc: float) -> float:
        return min(max(slope * pc + intercept, 0.0), 1.0)

    def alternative(pc: float) -> tuple[float, float]:
        return (edge(pc), 1.0) if side == "greater" else (0.0, edge(pc))

    def inner(pc: float) -> float:
        lo, hi = alternative(pc)
        if hi <= lo:
            return 0.0
        return jeffreys_integral(lambda ps: math.exp(loglik(ks, ns, ps)), lo, hi)

    numerator = jeffreys_integral(lambda pc: math.exp(loglik(kc, nc, pc)) * inner(pc), 0.0, 1.0)
    mass = jeffreys_integral(lambda pc: jeffreys_mass(*alternative(pc)), 0.0, 1.0)
    grid = np.linspace(0.0, 1.0, 1201)
    pc, ps = np.meshgrid(grid, grid)
    edges = np.clip(slope * grid + intercept, 0.0, 1.0)
    null = ps <= slope * pc + intercept if side == "greater" else ps >= slope * pc + intercept
    with np.errstate(invalid="ignore"):
        surface = np.where(null, loglik(ks, ns, ps) + loglik(kc, nc, pc), -np.inf)
    best = max(float(np.max(surface)), float(np.max(loglik(ks, ns, edges) + loglik(kc, nc, grid))))
    return math.log(numerator / mass) - best


@pytest.mark.parametrize(
    ("ks", "ns", "kc", "nc", "slope", "intercept", "side", "slack"),
    [
        (12, 40, 3, 50, 1.3, 0.005, "greater", 0.02),  # well past the limit
        (6, 40, 3, 50, 1.3, 0.005, "greater", 0.02),  # a little past it
        # Inside, where the alternative holds little posterior mass, the lower sum is coarser
        # (the e-value is e^−9 either way).
        (2, 40, 10, 50, 1.3, 0.005, "greater", 0.2),
        (1, 40, 12, 50, 0.7, -0.005, "less", 0.02),  # lower limit, well below it
        (9, 30, 3, 30, 1.0, 0.1, "greater", 0.02),  # the boundary reaches 1 before p_c does
    ],
)
def test_two_rate_e_value_is_the_mixture_over_the_best_null_fit(
    ks: int, ns: int, kc: int, nc: int, slope: float, intercept: float, side: str, slack: float
) -> None:
    expected = reference_two_rates(ks, ns, kc, nc, slope, intercept, side)
    found = two_rates_log_e(ks, ns, kc, nc, slope, intercept, side)  # type: ignore[arg-type]
    # The quadrature and the null fit err only on the side of less evidence (the grid of the
    # reference finds a slightly worse null fit, so it errs the other way).
    assert expected - slack < found <= expected + 1e-9


def test_two_rate_e_value_where_the_alternative_is_empty_or_certain() -> None:
    # Above the line p_s > 2·p_c + 1: nothing, so no evidence at all.
    assert two_rates_log_e(5, 10, 1, 10, 2.0, 1.0, "greater") == -math.inf
    # Below p_s < 0·p_c − 0.5: nothing either.
    assert two_rates_log_e(0, 10, 1, 10, 0.0, -0.5, "less") == -math.inf
    # A sliver p_s > p_c + 0.9999 that the prior holds but a baseline failing every request
    # (p_c near 1) leaves nothing of: no evidence.
    assert _prior_mass(1.0, 0.9999, "greater") > 0
    assert two_rates_log_e(0, 50, 50, 50, 1.0, 0.9999, "greater") == -math.inf


def boundary_fit(ks: int, ns: int, kc: int, nc: int, slope: float, intercept: float) -> float:
    """The best log-likelihood on the line p_s = m·p_c + c: where its derivative in p_c is 0."""

    def slope_of(pc: float) -> float:
        ps = slope * pc + intercept
        return slope * (ks / ps - (ns - ks) / (1 - ps)) + kc / pc - (nc - kc) / (1 - pc)

    pc = optimize.brentq(slope_of, 1e-9, (1 - intercept) / slope - 1e-9, xtol=1e-15)
    return float(loglik(ks, ns, slope * pc + intercept) + loglik(kc, nc, pc))


def test_best_null_fit_on_the_boundary_and_inside() -> None:
    # The unconstrained fit (0.3, 0.06) is past p_s ≤ 1.3 p_c + 0.005: the best null fit is on it.
    assert _best_null(12, 40, 3, 50, 1.3, 0.005, "greater") == pytest.approx(
        boundary_fit(12, 40, 3, 50, 1.3, 0.005), abs=1e-10
    )
    assert _best_null(2, 40, 15, 50, 0.7, -0.005, "less") == pytest.approx(
        boundary_fit(2, 40, 15, 50, 0.7, -0.005), abs=1e-10
    )
    # Inside the null: the unconstrained fit itself.
    inside = float(loglik(2, 40, 2 / 40) + loglik(10, 50, 10 / 50))
    assert _best_null(2, 40, 10, 50, 1.3, 0.005, "greater") == pytest.approx(inside, abs=1e-12)
    # One source request, failed, beside a baseline that allows it: p_s = 1 fits best.
    inside = float(loglik(8, 10, 0.8))
    assert _best_null(1, 1, 8, 10, 1.3, 0.005, "greater") == pytest.approx(inside, abs=1e-12)
    # No source data: every p_s fits equally; no baseline data: every p_c does.
    assert _best_null(0, 0, 3, 50, 1.3, 0.005, "greater") == pytest.approx(
        float(loglik(3, 50, 0.06)), abs=1e-12
    )
    assert _best_null(3, 10, 0, 0, 1.3, 0.005, "greater") == pytest.approx(
        float(loglik(3, 10, 0.3)), abs=1e-12
    )
    # The null side of a lower limit past 1 (p_s ≥ 1.3 p_c + 0.005): only p_s = 1 near p_c = 1.
    assert _best_null(4, 10, 9, 10, 1.3, 0.005, "less") == pytest.approx(
        max(float(loglik(4, 10, 1.3 * pc + 0.005) + loglik(9, 10, pc)) for pc in np.linspace(0, 0.765, 7651)),
        abs=1e-6,
    )


# ---------------------------------------------------------------------------- evidence and limits


def test_a_side_decides_at_exactly_one_over_alpha() -> None:
    def evidence(out: float, within: float, alpha: float = 0.01) -> Evidence:
        return Evidence(ORDER, alpha, out, within, 10, 10)

    assert evidence(0, 0).threshold == 2.0  # log10(1 / 0.01)
    assert evidence(0, 0, 0.05).threshold == pytest.approx(math.log10(20.0), abs=1e-15)
    assert evidence(2.0, 0.0).decision == "violation"
    assert evidence(1.999, 0.0).decision is None
    assert evidence(0.0, 2.0).decision == "pass"
    assert evidence(0.0, 1.999).decision is None
    assert evidence(2.0, 2.0).decision == "violation"  # cannot happen at a sane α; outside first


def test_evidence_details_are_the_e_values_and_the_bounds_as_a_pair() -> None:
    details = Evidence(RATES, 0.05, 2.5, -1.0, 10, None, -3.0, 4.0).details()
    assert details == {
        "sequential_test": RATES,
        "alpha": 0.05,
        "threshold": pytest.approx(20.0),
        "evidence": pytest.approx(math.sqrt(10) * 100, rel=1e-12),
        "evidence_pass": pytest.approx(0.1, rel=1e-12),
        "bound_low": -3.0,
        "bound_high": 4.0,
    }
    capped = Evidence(ORDER, 0.05, 400.0, 1000.0, 10, 10).details()
    assert capped["evidence"] == capped["evidence_pass"] == 1e300
    for low, high in ((None, 4.0), (-3.0, None)):
        one_sided = Evidence(QUANTILE, 0.05, 0.0, 0.0, 10, 10, low, high).details()
        assert "bound_low" not in one_sided and "bound_high" not in one_sided


def test_the_limit_line_is_the_scale_factor_rule() -> None:
    assert limit_line(subject(scale=30, tolerance=2)) == Line(1.3, 2.0, 1)
    assert limit_line(subject(scale=30, tolerance=2, validate="lower")) == Line(0.7, -2.0, -1)
    assert limit_line(subject(_upperlimit=100)) == Line(0.0, 100.0, 1)
    assert limit_line(subject(_lowerlimit=40, validate="lower")) == Line(0.0, 40.0, -1)
    assert Line(1.0, 0.0, 1).upper and not Line(1.0, 0.0, -1).upper
    # A per-metric scale factor wins over the default.
    who = subject(scale=30, tolerance=2)
    comparison = Comparison.model_validate(
        {
            "name": "C",
            "source": "Staging",
            "compare": "Production",
            "scalefactorperc": {"default": 30, "service.responsetime": 10},
            "abstolerance": {"default": 2},
        }
    )
    assert limit_line(dataclasses.replace(who, comparison=comparison)) == Line(1.1, 2.0, 1)


def test_which_test_for_rates_and_counts() -> None:
    for aggregate in ("avg", "count", "sum"):
        assert which_test(subject("service.requestspermin", aggregate, validate="lower")) == SPLIT
    for aggregate in ("count", "sum"):
        assert which_test(subject("service.requests", aggregate, validate="lower")) == SPLIT
    assert which_test(subject("service.requestspermin", "max", validate="lower")) is None
    # A query value (a Keptn SLI) has no sequential test, whatever its aggregate.
    value = dataclasses.replace(
        subject("service.requestspermin", "avg", validate="lower"), kind=MetricKind.VALUE
    )
    assert which_test(value) is None


# ---------------------------------------------------------------------------- the ordering


def test_order_counts_requests_outside_and_on_the_limit() -> None:
    # m = 1.5, c = 2 (exact in binary): the limit of a 10 ms baseline request is 17 ms. Three
    # source requests are past it, two exactly on it, three within; the ninth has no partner.
    who = subject(scale=50, tolerance=2)
    source = [18.0, 20.0, 17.5, 17.0, 17.0, 16.0, 3.0, 12.0, 99.0]
    evidence = evaluate(who, measured(who, source), measured(who, [10.0] * 8, "Production"), 0.05)
    assert evidence is not None and evidence.test == ORDER
    assert evidence.log10_evidence == pytest.approx(reference_log_e(3, 8, 0.5, "greater") / LN10, abs=1e-9)
    assert evidence.log10_evidence_pass == pytest.approx(reference_log_e(5, 8, 0.5, "less") / LN10, abs=1e-9)
    assert (evidence.source_samples, evidence.compare_samples) == (9, 8)
    # The baseline longer than the source: pairs up to the source's length.
    longer = evaluate(who, measured(who, source[:4]), measured(who, [10.0] * 8, "Production"), 0.05)
    assert longer is not None
    assert longer.log10_evidence == pytest.approx(reference_log_e(3, 4, 0.5, "greater") / LN10, abs=1e-9)


def test_order_below_a_lower_limit_and_against_a_static_one() -> None:
    # lower: m = 0.5, c = −2: the limit of a 10 ms request is 3 ms; outside is below it.
    who = subject(scale=50, tolerance=2, validate="lower")
    source = [1.0, 2.0, 3.0, 3.0, 9.0, 9.0]
    evidence = evaluate(who, measured(who, source), measured(who, [10.0] * 6, "Production"), 0.05)
    assert evidence is not None
    assert evidence.log10_evidence == pytest.approx(reference_log_e(2, 6, 0.5, "greater") / LN10, abs=1e-9)
    assert evidence.log10_evidence_pass == pytest.approx(reference_log_e(4, 6, 0.5, "less") / LN10, abs=1e-9)
    static = subject(_upperlimit=15)
    evidence = evaluate(static, measured(static, [16.0, 15.0, 14.0, 20.0]), None, 0.05)
    assert evidence is not None and evidence.compare_samples is None
    assert evidence.log10_evidence == pytest.approx(reference_log_e(2, 4, 0.5, "greater") / LN10, abs=1e-9)
    assert evidence.log10_evidence_pass == pytest.approx(reference_log_e(3, 4, 0.5, "less") / LN10, abs=1e-9)


# ---------------------------------------------------------------------------- quantiles


def crossing_level(holds: Any) -> float:
    """−log10 of the smallest level at which ``holds`` (monotone in δ), by a scan on a fine
    grid of levels (no bisection): the anytime-valid p-value."""
    levels = np.logspace(-12, 0, 4801)
    ok = [d for d in levels if holds(float(d))]
    return -math.log10(ok[0]) if ok else 0.0


def test_quantile_margin_against_a_baseline_splits_the_level() -> None:
    rng = np.random.default_rng(30)
    x, y = rng.permutation(400) / 4.0 + 30.0, rng.permutation(300) / 4.0
    who = subject(aggregate="p90", scale=30, tolerance=2)
    alpha = 0.05
    evidence = evaluate(who, measured(who, x), measured(who, y, "Production"), alpha)
    assert evidence is not None and evidence.test == QUANTILE
    source, base = QuantileSequence(x, 0.9), QuantileSequence(y, 0.9)

    def margin(delta: float) -> tuple[float, float]:
        # Each side at δ/2; the limit 1.3 × baseline quantile + 2 by interval arithmetic.
        half = delta / 2
        return source.lower(half) - (1.3 * base.upper(half) + 2), source.upper(half) - (
            1.3 * base.lower(half) + 2
        )

    assert (evidence.bound_low, evidence.bound_high) == pytest.approx(margin(alpha), abs=1e-9)
    assert (evidence.source_samples, evidence.compare_samples) == (400, 300)
    assert evidence.log10_evidence == pytest.approx(crossing_level(lambda d: margin(d)[0] > 0), abs=0.01)
    assert evidence.log10_evidence_pass == pytest.approx(
        crossing_level(lambda d: margin(d)[1] <= 0), abs=0.01
    )


def test_quantile_margin_for_a_lower_limit() -> None:
    rng = np.random.default_rng(31)
    x, y = rng.permutation(300) / 4.0, rng.permutation(300) / 4.0 + 40.0
    who = subject(aggregate="median", scale=30, tolerance=2, validate="lower")
    evidence = evaluate(who, measured(who, x), measured(who, y, "Production"), 0.05)
    assert evidence is not None
    source, base = QuantileSequence(x, 0.5), QuantileSequence(y, 0.5)

    def margin(delta: float) -> tuple[float, float]:
        half = delta / 2
        return source.lower(half) - (0.7 * base.upper(half) - 2), source.upper(half) - (
            0.7 * base.lower(half) - 2
        )

    assert (evidence.bound_low, evidence.bound_high) == pytest.approx(margin(0.05), abs=1e-9)
    assert evidence.log10_evidence > 1 and evidence.log10_evidence_pass == 0.0
    assert evidence.log10_evidence == pytest.approx(crossing_level(lambda d: margin(d)[1] < 0), abs=0.01)


def test_quantile_against_a_static_limit_uses_the_whole_level() -> None:
    x = np.random.default_rng(32).permutation(200) / 2.0
    who = subject(aggregate="p90", _upperlimit=50)
    evidence = evaluate(who, measured(who, x), None, 0.05)
    assert evidence is not None and evidence.compare_samples is None
    source = QuantileSequence(x, 0.9)
    assert (evidence.bound_low, evidence.bound_high) == (source.lower(0.05) - 50, source.upper(0.05) - 50)
    # Given a compare side anyway, a static limit ignores it.
    ignored = evaluate(who, measured(who, x), measured(who, x / 2, "Production"), 0.05)
    assert ignored == evidence


@pytest.mark.parametrize(
    ("validate", "offset", "outside", "within"),
    [
        ("upper", 0.0, False, True),  # every value on the limit: within (≤), not outside
        ("upper", 0.5, True, False),
        ("upper", -0.5, False, True),
        ("lower", 0.0, False, True),  # on a lower limit: within (≥), not outside
        ("lower", 0.5, False, True),
        ("lower", -0.5, True, False),
    ],
)
def test_quantile_on_and_next_to_a_static_limit(
    validate: str, offset: float, outside: bool, within: bool
) -> None:
    limit = {"_upperlimit" if validate == "upper" else "_lowerlimit": 10}
    who = subject(aggregate="p90", validate=validate, **limit)
    evidence = evaluate(who, measured(who, np.full(60, 10.0 + offset)), None, 0.05)
    assert evidence is not None
    assert evidence.bound_low == evidence.bound_high == offset
    assert (evidence.log10_evidence > 0, evidence.log10_evidence_pass > 0) == (outside, within)
    assert min(evidence.log10_evidence, evidence.log10_evidence_pass) == 0.0


def test_quantile_with_too_few_values_has_no_bounds() -> None:
    who = subject(aggregate="p90", _upperlimit=10)
    evidence = evaluate(who, measured(who, [11.0]), None, 0.05)
    assert evidence is not None
    assert (evidence.bound_low, evidence.bound_high) == (None, None)
    assert evidence.decision is None and evidence.log10_evidence_pass == 0.0
    # Two values: the smaller bounds the 90th percentile from below, nothing from above yet.
    evidence = evaluate(who, measured(who, [12.0, 11.0]), None, 0.05)
    assert evidence is not None
    assert (evidence.bound_low, evidence.bound_high) == (1.0, None)
    assert evidence.log10_evidence > 0 and evidence.log10_evidence_pass == 0.0


# ---------------------------------------------------------------------------- failure rates


def failures(k: int, n: int) -> np.ndarray:
    return np.r_[np.ones(k), np.zeros(n - k)]


@pytest.mark.parametrize(
    ("validate", "out", "within"), [("upper", "greater", "less"), ("lower", "less", "greater")]
)
def test_failure_rate_against_a_static_limit(validate: str, out: str, within: str) -> None:
    limit = {"_upperlimit" if validate == "upper" else "_lowerlimit": 5}  # percent
    who = subject("service.failurerate", validate=validate, **limit)
    alpha = 0.05
    evidence = evaluate(who, measured(who, failures(30, 200)), None, alpha)
    assert evidence is not None and evidence.test == RATES
    assert evidence.log10_evidence == pytest.approx(reference_log_e(30, 200, 0.05, out) / LN10, abs=1e-8)
    assert evidence.log10_evidence_pass == pytest.approx(
        reference_log_e(30, 200, 0.05, within) / LN10, abs=1e-8
    )
    assert (evidence.source_samples, evidence.compare_samples) == (200, None)
    low, high = bernoulli_bound(30, 200, alpha, "lower"), bernoulli_bound(30, 200, alpha, "upper")
    assert (evidence.bound_low, evidence.bound_high) == pytest.approx(
        (100 * (low - 0.05), 100 * (high - 0.05))
    )


def test_failure_rate_against_a_static_limit_of_zero() -> None:
    # No failures allowed: one failure is certain evidence; none can never prove "within" at 0.
    who = subject("service.failurerate", _upperlimit=0)
    evidence = evaluate(who, measured(who, failures(1, 50)), None, 0.05)
    assert evidence is not None
    assert evidence.log10_evidence == math.inf and evidence.decision == "violation"
    assert evidence.log10_evidence_pass == -1000.0 / LN10  # −inf kept finite


def pass_side(ks: int, ns: int, kc: int, nc: int, slope: float, intercept: float, upper: bool) -> float:
    """The pass side's log e-value by a scan over t (then a finer one around the best): the
    source conclusively within t and the baseline conclusively where its limit is beyond t
    (each a Bernoulli claim), each at α/2."""
    within, opposite = ("less", "greater") if upper else ("greater", "less")

    def weaker(t: float) -> float:
        source = claim_log_e(ks, ns, t, within)  # type: ignore[arg-type]
        return min(source, claim_log_e(kc, nc, (t - intercept) / slope, opposite))  # type: ignore[arg-type]

    grid = np.linspace(0.0, 1.0, 2001)
    at = int(np.argmax([weaker(float(t)) for t in grid]))
    fine = np.linspace(grid[max(at - 1, 0)], grid[min(at + 1, 2000)], 4001)
    return max(weaker(float(t)) for t in fine) - math.log(2.0)


@pytest.mark.parametrize(
    ("validate", "ks", "kc", "slope", "intercept"),
    [
        ("upper", 40, 10, 1.3, 0.005),
        ("upper", 0, 5, 1.3, 0.005),
        ("lower", 2, 40, 0.7, -0.005),
        ("lower", 60, 40, 0.7, -0.005),
    ],
)
def test_failure_rates_against_a_baseline(
    validate: str, ks: int, kc: int, slope: float, intercept: float
) -> None:
    who = subject("service.failurerate", scale=30, tolerance=0.5, validate=validate)
    ns, nc, alpha = 300, 400, 0.05
    evidence = evaluate(
        who, measured(who, failures(ks, ns)), measured(who, failures(kc, nc), "Production"), alpha
    )
    assert evidence is not None and evidence.test == RATES
    out = "greater" if validate == "upper" else "less"
    violation = two_rates_log_e(ks, ns, kc, nc, slope, intercept, out)  # type: ignore[arg-type]
    assert evidence.log10_evidence == pytest.approx(max(violation, -1000.0) / LN10, abs=1e-12)
    found = evidence.log10_evidence_pass * LN10
    scanned = pass_side(ks, ns, kc, nc, slope, intercept, validate == "upper")
    assert found >= scanned - 1e-9 and found == pytest.approx(scanned, abs=1e-4)
    # Bounds of source − limit in points: each rate's bound at α/2, the limit by interval arithmetic.
    s_low, s_high = bernoulli_bound(ks, ns, alpha / 2, "lower"), bernoulli_bound(ks, ns, alpha / 2, "upper")
    c_low, c_high = bernoulli_bound(kc, nc, alpha / 2, "lower"), bernoulli_bound(kc, nc, alpha / 2, "upper")
    low = s_low - slope * c_high - intercept
    high = s_high - slope * c_low - intercept
    assert (evidence.bound_low, evidence.bound_high) == pytest.approx((100 * low, 100 * high), abs=1e-9)
    assert (evidence.source_samples, evidence.compare_samples) == (ns, nc)


def test_failure_rate_bounds_for_a_limit_falling_with_the_baseline() -> None:
    # Scale 150 % on a lower limit: m = −0.5. Interval arithmetic with a negative factor takes
    # the baseline's upper bound for the lower end of the limit and vice versa.
    who = subject("service.failurerate", scale=150, tolerance=0.5, validate="lower")
    alpha = 0.05
    evidence = evaluate(
        who, measured(who, failures(20, 100)), measured(who, failures(30, 100), "Production"), alpha
    )
    assert evidence is not None
    s_low, s_high = bernoulli_bound(20, 100, alpha / 2, "lower"), bernoulli_bound(20, 100, alpha / 2, "upper")
    c_low, c_high = bernoulli_bound(30, 100, alpha / 2, "lower"), bernoulli_bound(30, 100, alpha / 2, "upper")
    low = s_low - (-0.5 * c_low) - (-0.005)
    high = s_high - (-0.5 * c_high) - (-0.005)
    assert (evidence.bound_low, evidence.bound_high) == pytest.approx((100 * low, 100 * high), abs=1e-9)


def test_failure_rate_pass_needs_a_baseline_limit_above_zero() -> None:
    # A lower limit at 0 × baseline (scale 100 %): the baseline cannot place it; no pass evidence.
    who = subject("service.failurerate", scale=100, tolerance=0.0, validate="lower")
    evidence = evaluate(
        who, measured(who, failures(20, 100)), measured(who, failures(5, 100), "Production"), 0.05
    )
    assert evidence is not None
    assert evidence.log10_evidence_pass == -1000.0 / LN10


# ---------------------------------------------------------------------------- request split


def rate_measurement(who: Subject, samples: int, env: str = "Staging", seconds: float = 10.0) -> Measurement:
    return measured(who, np.zeros(samples), env, seconds)


@pytest.mark.parametrize(
    ("validate", "scale", "out", "within"),
    [("lower", 90, "less", "greater"), ("upper", 30, "greater", "less")],
)
def test_request_split_is_a_bernoulli_share(validate: str, scale: float, out: str, within: str) -> None:
    who = subject("service.requestspermin", "count", scale=scale, validate=validate)
    evidence = evaluate(who, rate_measurement(who, 300), rate_measurement(who, 350, "Production"), 0.05)
    assert evidence is not None and evidence.test == SPLIT
    m = (100 + (scale if validate == "upper" else -scale)) / 100
    share = m / (1 + m)  # each request is the source's with probability λs / (λs + λc)
    assert evidence.log10_evidence == pytest.approx(reference_log_e(300, 650, share, out) / LN10, abs=1e-8)
    assert evidence.log10_evidence_pass == pytest.approx(
        reference_log_e(300, 650, share, within) / LN10, abs=1e-8
    )
    assert (evidence.source_samples, evidence.compare_samples) == (300, 350)


def test_request_split_needs_windows_of_one_length_and_a_ratio() -> None:
    who = subject("service.requestspermin", "count", scale=30, validate="lower")
    source = rate_measurement(who, 300)
    assert (
        evaluate(who, source, rate_measurement(who, 300, "Production", 10.1), 0.05) is not None
    )  # within 1 %
    assert evaluate(who, source, rate_measurement(who, 300, "Production", 10.11), 0.05) is None
    assert evaluate(who, source, rate_measurement(who, 300, "Production", 5.0), 0.05) is None
    # A limit of 0 × baseline (scale 100 %) is no share at all.
    free = subject("service.requestspermin", "count", scale=100, validate="lower")
    assert (
        evaluate(free, rate_measurement(free, 300), rate_measurement(free, 300, "Production"), 0.05) is None
    )


def test_evaluate_needs_observations_on_both_sides() -> None:
    who = subject()
    bare = Measurement(MetricQuery("S", "Staging", None, *_metric(who), Window(0.0, 10.0)), 5.0, 10, None)
    assert evaluate(who, bare, measured(who, [1.0] * 10, "Production"), 0.05) is None
    assert evaluate(who, measured(who, [1.0] * 10), dataclasses.replace(bare, query=bare.query), 0.05) is None
    assert evaluate(who, measured(who, [1.0] * 10), None, 0.05) is None


def _metric(who: Subject) -> tuple[Any, Any]:
    from pytest_perfsig.metrics import parse_aggregate, parse_metric

    return parse_metric(who.entry.metric_key), parse_aggregate(who.entry.aggregate)


# ---------------------------------------------------------------------------- the verdict


def fixed_rule(status: str, details: dict[str, Any] | None = None) -> Any:
    """A stand-in for the fixed rule: always this status."""

    def judge(who: Subject, source: Measurement, compare: Measurement | None) -> Verdict:
        return Verdict(
            status=status,  # type: ignore[arg-type]
            metric=who.entry.metric_key,
            aggregate=who.entry.aggregate,
            method=None,
            unit=who.unit,
            source_env="Staging",
            compare_env="Production",
            message="fixed",
            rule="upper: Production × 1.30 + 2.0 ms abs",
            details=details,
        )

    return judge


def order_case(out: int, on: int, within: int) -> tuple[Subject, Measurement, Measurement]:
    who = subject(scale=50, tolerance=2)
    source = [20.0] * out + [17.0] * on + [5.0] * within
    return who, measured(who, source), measured(who, [10.0] * len(source), "Production")


def test_a_decision_needs_the_fixed_rule_to_agree() -> None:
    who, source, compare = order_case(40, 0, 0)  # 40 of 40 outside: e-value far above 20
    decided = judge_at(who, source, compare, 0.05, fixed_rule("violation", {"mean": 1}))
    details = decided.details or {}
    assert decided.status == "violation" and decided.judge == "sequential"
    assert details["decision"] == "violation" and details["mean"] == 1
    assert decided.rule == "upper: Production × 1.30 + 2.0 ms abs (sequential, α 0.05)"
    strength = reference_log_e(40, 40, 0.5, "greater") / LN10
    assert decided.message == (
        f"fixed; sequential: conclusively outside after 40 + 40 samples (evidence 1e{strength:.0f} ≥ 20)"
    )
    # The fixed rule says pass on the same samples: no sequential decision.
    guarded = judge_at(who, source, compare, 0.05, fixed_rule("pass"))
    assert guarded.status == "pass" and guarded.judge == "scalefactor"
    assert (guarded.details or {})["decision"] == "undecided"
    assert guarded.rule == "upper: Production × 1.30 + 2.0 ms abs"
    within = reference_log_e(40, 40, 0.5, "less") / LN10
    assert guarded.message == (
        f"fixed; sequential test undecided (evidence 1e{strength:.0f} outside, "
        f"{fmt(10**within)} within, 20 needed): judged by the fixed rule"
    )
    # An error or a skip is the fixed rule's own answer, untouched.
    for status in ("error", "skipped"):
        verdict = fixed_rule(status)(who, source, compare)
        assert judge_at(who, source, compare, 0.05, fixed_rule(status)) == verdict


def test_a_decided_pass_reports_the_pass_evidence() -> None:
    who, source, compare = order_case(0, 0, 12)
    verdict = judge_at(who, source, compare, 0.01, fixed_rule("pass"))
    assert verdict.status == "pass" and verdict.judge == "sequential"
    strength = math.exp(reference_log_e(0, 12, 0.5, "less"))  # none of 12 outside or on the limit
    assert verdict.message == (
        f"fixed; sequential: conclusively within after 12 + 12 samples (evidence {fmt(strength)} ≥ 100)"
    )
    assert verdict.rule.endswith("(sequential, α 0.01)")
    # Without a baseline (a static limit) only the source's samples are counted.
    static = subject(_upperlimit=17)
    verdict = judge_at(static, measured(static, [5.0] * 12), None, 0.01, fixed_rule("pass"))
    assert "conclusively within after 12 samples (" in verdict.message


def test_undecided_keeps_the_fixed_verdict_and_marks_it() -> None:
    who, source, compare = order_case(3, 2, 3)
    fixed = fixed_rule("violation")(who, source, compare)
    verdict = judge_at(who, source, compare, 0.05, fixed_rule("violation"))
    assert verdict.status == "violation" and verdict.judge == fixed.judge and verdict.rule == fixed.rule
    assert (verdict.details or {})["decision"] == "undecided"


def test_evidence_is_printed_as_a_power_of_ten_from_a_million() -> None:
    assert sequential._power(6.0) == "1e6"
    assert sequential._power(7.4) == "1e7"
    assert sequential._power(5.5) == fmt(10**5.5)
    assert sequential._power(-0.5) == fmt(10**-0.5)


def test_judge_uses_the_comparisons_alpha() -> None:
    who, source, compare = order_case(3, 0, 3)
    assert (sequential.judge(who, source, compare).details or {})["alpha"] == 0.05
    comparison = Comparison.model_validate(
        {
            "name": "C",
            "source": "Staging",
            "compare": "Production",
            "scalefactorperc": {"default": 50},
            "abstolerance": {"default": 2},
            "sequential": {"alpha": 0.2},
        }
    )
    verdict = sequential.judge(dataclasses.replace(who, comparison=comparison), source, compare)
    assert (verdict.details or {})["alpha"] == 0.2
