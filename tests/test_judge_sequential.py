"""The sequential judge's statistics on synthetic samples: type-I error under continuous
monitoring (simulated, seeded), power on constructed shifts, and decisions on constructed
samples. Every simulation runs in seconds."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from pytest_perfsig.judges import judge
from pytest_perfsig.judges.evalues import (
    QuantileSequence,
    bernoulli_bound,
    bernoulli_log_e,
    two_rates_log_e,
)
from pytest_perfsig.judges.sequential import (
    ORDER,
    QUANTILE,
    RATES,
    SPLIT,
    evaluate,
    judge_at,
    which_test,
)
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.monspec import Comparison, SignatureEntry
from pytest_perfsig.verdict import Subject
from pytest_perfsig.windows import Measurement, MetricQuery, Window

ALPHA = 0.05


def subject(
    metric: str = "service.responsetime",
    aggregate: str = "avg",
    *,
    scale: float = 30,
    tolerance: float | None = None,
    validate: str = "upper",
    **entry: Any,
) -> Subject:
    spec = SignatureEntry.model_validate(
        {"timeseries": metric, "aggregate": aggregate, "validate": validate, **entry}
    )
    comparison = Comparison.model_validate(
        {
            "name": "C",
            "source": "Staging",
            "compare": "Production",
            "scalefactorperc": {"default": scale},
            **({"abstolerance": {"default": tolerance}} if tolerance is not None else {}),
        }
    )
    parsed = parse_metric(metric)
    assert parsed is not None
    family = parsed.family
    return Subject(spec, comparison, None, family.unit, family.kind, family.abs_tolerance)


def measured(who: Subject, observations: Any, env: str = "Staging", seconds: float = 10.0) -> Measurement:
    """A measurement as the local source makes it: the aggregate and the raw observations."""
    from pytest_perfsig.aggregates import aggregate

    metric = parse_metric(who.entry.metric_key)
    spec = parse_aggregate(who.entry.aggregate)
    assert metric is not None and spec is not None
    obs = np.asarray(observations, dtype=float)
    query = MetricQuery("S", env, None, metric, spec, Window(0.0, seconds))
    if metric.family.name == "failurerate":
        value = 100.0 * float(obs.mean())
    elif metric.family.name in ("requestspermin", "requests"):
        value = obs.size / (seconds / 60.0)
    else:
        value = aggregate(obs, spec)
    return Measurement(query, value, int(obs.size), obs)


# ---------------------------------------------------------------------------- type I, monitored


def monitored_rejections(flags: Any, theta0: float, side: str) -> float:
    """The share of sequences whose e-process ever reaches 1/α, looked at after every sample."""
    counts = np.cumsum(flags, axis=1)
    ever = np.zeros(flags.shape[0], dtype=bool)
    for n in range(1, flags.shape[1] + 1):
        ever |= bernoulli_log_e(counts[:, n - 1], n, theta0, side) >= math.log(1 / ALPHA)  # type: ignore[arg-type]
    return float(ever.mean())


@pytest.mark.parametrize("theta0", [0.5, 0.9, 0.02])
def test_bernoulli_e_process_keeps_its_level_under_continuous_monitoring(theta0: float) -> None:
    # 2,000 sequences exactly on the null boundary (the hardest case), looked at after every
    # one of 300 samples, each side: the sign test (0.5), quantile bounds (0.9), failure rates.
    rng = np.random.default_rng(1)
    flags = rng.random((2000, 300)) < theta0
    for side in ("greater", "less"):
        rate = monitored_rejections(flags, theta0, side)
        assert rate <= 0.045, f"{side}: {rate:.3f} of the sequences falsely rejected at some look"


def test_a_fixed_n_test_repeated_at_every_look_would_not() -> None:
    # The contrast the sequential tests exist for: a one-sided z-test at 5 % asked after every
    # sample rejects most null sequences sooner or later.
    rng = np.random.default_rng(1)
    flags = rng.random((2000, 400)) < 0.5
    n = np.arange(1, 401)
    z = (np.cumsum(flags, axis=1) - 0.5 * n) / np.sqrt(0.25 * n)
    assert float((z[:, 9:] > 1.645).any(axis=1).mean()) > 0.25


def test_quantile_bounds_are_the_e_process_on_the_indicators() -> None:
    # The bound misses the true quantile exactly when the e-process on 1{X < Q} (or ≤ Q)
    # reaches 1/α: the quantile sequences inherit its level, checked above.
    rng = np.random.default_rng(3)
    q = 0.9
    true = -math.log(1 - q)  # exponential(1)
    for _ in range(40):
        x = rng.exponential(size=300)
        below = np.cumsum(x < true)
        for n in range(10, 301, 7):
            sequence = QuantileSequence(x[:n], q)
            misses_high = sequence.upper(ALPHA) < true
            misses_low = sequence.lower(ALPHA) > true
            e_high = bernoulli_log_e(below[n - 1], n, q, "greater") >= math.log(1 / ALPHA)
            e_low = bernoulli_log_e(below[n - 1], n, q, "less") >= math.log(1 / ALPHA)
            assert (misses_high, misses_low) == (bool(e_high), bool(e_low))


def test_order_test_keeps_its_level_for_identical_latencies() -> None:
    # A/A with no tolerance at all (f = 0, a = 0): P(X > Y) is exactly one half, the null's
    # boundary. 2,000 A/A sequences of log-normal latencies, looked at after every pair.
    rng = np.random.default_rng(4)
    x = rng.lognormal(3, 0.5, (2000, 400))
    y = rng.lognormal(3, 0.5, (2000, 400))
    assert monitored_rejections(x > y, 0.5, "greater") <= 0.045


def test_order_test_through_the_judge_keeps_its_level() -> None:
    # The same through evaluate(), with the bundled monspec's tolerance and a shift that puts
    # the source right at the limit: X = 1.3·Y + 2 in distribution (the hardest case).
    rng = np.random.default_rng(5)
    who = subject()
    rejected = 0
    for _ in range(200):
        y = rng.lognormal(3, 0.4, 300)
        x = 1.3 * rng.lognormal(3, 0.4, 300) + 2.0
        for n in range(20, 301, 20):
            evidence = evaluate(who, measured(who, x[:n]), measured(who, y[:n], "Production"), ALPHA)
            assert evidence is not None and evidence.test == ORDER
            if evidence.decision == "violation":
                rejected += 1
                break
    assert rejected <= 0.05 * 200


def test_two_rate_e_process_keeps_its_level_for_a_a() -> None:
    # 2,000 A/A sequences of 1 % failures on both sides, looked at after every 5 requests of
    # each. An e-value can only exceed 1 where the source's rate is past the limit line, so
    # only those looks need the computation (the rest are cached per count).
    rng = np.random.default_rng(6)
    source = rng.random((2000, 300)) < 0.01
    baseline = rng.random((2000, 300)) < 0.01
    cache: dict[tuple[int, int, int], float] = {}
    rejected = 0
    for s, c in zip(source, baseline, strict=True):
        ks, kc = np.cumsum(s), np.cumsum(c)
        for n in range(5, 301, 5):
            key = (int(ks[n - 1]), int(kc[n - 1]), n)
            if key[0] / n <= 1.3 * key[1] / n + 0.005:
                continue
            if key not in cache:
                cache[key] = two_rates_log_e(*key[:1], n, key[1], n, 1.3, 0.005, "greater")
            if cache[key] >= math.log(1 / ALPHA):
                rejected += 1
                break
    assert rejected <= 0.02 * 2000


def test_two_rate_e_process_keeps_its_level_on_the_limit_line() -> None:
    # The hardest null: the source exactly on the limit, p_s = 1.3 p_c + 0.5 points.
    rng = np.random.default_rng(7)
    p_c = 0.04
    rejected = 0
    for _ in range(150):
        s = np.cumsum(rng.random(400) < 1.3 * p_c + 0.005)
        c = np.cumsum(rng.random(400) < p_c)
        for n in range(20, 401, 20):
            if s[n - 1] / n > 1.3 * c[n - 1] / n + 0.005 and two_rates_log_e(
                int(s[n - 1]), n, int(c[n - 1]), n, 1.3, 0.005, "greater"
            ) >= math.log(1 / ALPHA):
                rejected += 1
                break
    assert rejected <= 0.05 * 150


def test_bernoulli_bounds_cover_the_mean() -> None:
    rng = np.random.default_rng(8)
    for p in (0.0, 0.003, 0.2):
        flags = rng.random((300, 500)) < p
        k = flags.sum(axis=1)
        low = np.array([bernoulli_bound(int(x), 500, ALPHA, "lower") for x in k])
        high = np.array([bernoulli_bound(int(x), 500, ALPHA, "upper") for x in k])
        assert np.mean((low > p) | (high < p)) <= 2 * ALPHA
    assert bernoulli_bound(0, 1000, ALPHA, "upper") < 0.005  # zero failures in 1,000: below 0.5 %
    assert bernoulli_bound(0, 0, ALPHA, "upper") == 1.0


# ---------------------------------------------------------------------------- power


def first_decision(
    who: Subject, source: Any, baseline: Any | None, every: int, alpha: float = ALPHA / 7
) -> Any:
    """(decision, samples) at the first look that decides, looking every ``every`` samples."""
    for n in range(every, len(source) + 1, every):
        compare = None if baseline is None else measured(who, baseline[:n], "Production")
        evidence = evaluate(who, measured(who, source[:n]), compare, alpha)
        assert evidence is not None
        if evidence.decision is not None:
            return evidence.decision, n
    return None, len(source)


def app_latency(rng: np.random.Generator, base: float, size: int, factor: float = 1.0) -> Any:
    """Like the sample app behind a client: base × U(0.8, 1.2) of work, plus an overhead."""
    return base * factor * rng.uniform(0.8, 1.2, size) + rng.gamma(2.0, 1.5, size)


def test_half_again_as_slow_is_caught_within_a_few_hundred_requests() -> None:
    rng = np.random.default_rng(10)
    found = []
    for aggregate in ("avg", "p90"):
        who = subject(aggregate=aggregate)
        for _ in range(10):
            decision, n = first_decision(
                who, app_latency(rng, 50, 1500, 1.5), app_latency(rng, 50, 1500), every=25
            )
            found.append((aggregate, decision, n))
    assert all(d == "violation" for _, d, _ in found), found
    assert max(n for a, _, n in found if a == "avg") <= 200, found
    assert max(n for a, _, n in found if a == "p90") <= 600, found


def test_ten_percent_slower_is_passed() -> None:
    rng = np.random.default_rng(11)
    for aggregate in ("avg", "p90", "median"):
        who = subject(aggregate=aggregate)
        for _ in range(5):
            decision, n = first_decision(
                who, app_latency(rng, 50, 1500, 1.1), app_latency(rng, 50, 1500), every=25
            )
            assert decision == "pass" and n <= 600, (aggregate, decision, n)


def test_two_points_more_failures_are_caught() -> None:
    # +2 points against a baseline without failures: the absolute tolerance (0.5 points) and the
    # baseline's own uncertainty (no failures seen is not "none to expect") set the pace.
    rng = np.random.default_rng(12)
    who = subject("service.failurerate", tolerance=0.5)
    samples = []
    for _ in range(12):
        decision, n = first_decision(who, (rng.random(3000) < 0.02).astype(float), np.zeros(3000), every=100)
        assert decision == "violation"
        samples.append(n)
    assert float(np.median(samples)) <= 2000, samples


def test_half_the_invokes_failing_is_caught_at_once() -> None:
    rng = np.random.default_rng(13)
    who = subject("servicemethod.failurerate", tolerance=0.5)
    decision, n = first_decision(who, (rng.random(200) < 0.5).astype(float), np.zeros(200), every=5)
    assert decision == "violation" and n <= 40


# ---------------------------------------------------------------------------- decisions


def test_which_test_judges_which_entry() -> None:
    assert which_test(subject()) == ORDER
    assert which_test(subject(aggregate="p90")) == QUANTILE
    assert which_test(subject(aggregate="median")) == QUANTILE
    assert which_test(subject(aggregate="max")) is None
    assert which_test(subject("service.failurerate", tolerance=0.5)) == RATES
    assert which_test(subject("service.failurerate", "p90", tolerance=0.5)) is None
    assert which_test(subject("service.requestspermin", "count", validate="lower")) == SPLIT
    # An absolute tolerance on a rate is not a ratio of two streams: today's rule judges it.
    assert which_test(subject("service.requestspermin", "count", tolerance=5)) is None


def test_a_decided_violation_carries_its_evidence() -> None:
    who = subject("service.failurerate", tolerance=0.5)
    source = np.r_[np.ones(25), np.zeros(175)]  # 12.5 % failed
    verdict = judge_at(who, measured(who, source), measured(who, np.zeros(250), "Production"), ALPHA / 7)
    assert verdict.status == "violation" and verdict.judge == "sequential"
    details = verdict.details or {}
    assert details["decision"] == "violation" and details["sequential_test"] == RATES
    assert details["evidence"] >= details["threshold"] == pytest.approx(140)
    assert details["bound_low"] > 0  # source − limit, in points, conclusively positive
    assert "conclusively outside after 200 + 250 samples" in verdict.message
    assert verdict.rule.startswith("upper: Production × 1.30 + 0.5 % abs")


def test_a_decided_pass_on_quantiles_has_bounds() -> None:
    rng = np.random.default_rng(20)
    who = subject(aggregate="p90")
    verdict = judge_at(
        who, measured(who, app_latency(rng, 20, 800)), measured(who, app_latency(rng, 20, 800)), ALPHA
    )
    details = verdict.details or {}
    assert verdict.status == "pass" and details["decision"] == "pass"
    assert details["bound_low"] < details["bound_high"] <= 0


def test_undecided_falls_back_to_the_fixed_rule_and_says_so() -> None:
    who = subject("service.failurerate", tolerance=0.5)
    verdict = judge_at(who, measured(who, np.zeros(300)), measured(who, np.zeros(300), "Production"), ALPHA)
    assert verdict.status == "pass" and verdict.judge == "scalefactor"
    assert (verdict.details or {})["decision"] == "undecided"
    assert "judged by the fixed rule" in verdict.message


def test_no_decision_against_the_fixed_rule_on_the_same_samples() -> None:
    # 70 % of the requests are slower than the limit, but the mean is below it: the ordering
    # has evidence of a violation, the mean rule says pass. No sequential decision then.
    who = subject(scale=0, tolerance=0)
    source = np.r_[np.full(700, 11.0), np.full(300, 5.0)]  # mean 9.2
    verdict = judge_at(who, measured(who, source), measured(who, np.full(1000, 10.0), "Production"), ALPHA)
    assert (verdict.details or {})["evidence"] > 1e6
    assert verdict.status == "pass" and (verdict.details or {})["decision"] == "undecided"


def test_static_limit_and_request_split() -> None:
    rng = np.random.default_rng(21)
    static = subject(_upperlimit=100)
    verdict = judge_at(static, measured(static, app_latency(rng, 5, 60)), None, ALPHA)
    assert verdict.status == "pass" and (verdict.details or {})["decision"] == "pass"
    rate = subject("service.requestspermin", "count", scale=90, validate="lower")
    staging = measured(rate, np.zeros(300))
    production = measured(rate, np.zeros(350), "Production")
    verdict = judge_at(rate, staging, production, ALPHA)
    assert verdict.status == "pass" and (verdict.details or {})["sequential_test"] == SPLIT
    starved = judge_at(rate, measured(rate, np.zeros(10)), measured(rate, np.zeros(900), "Production"), ALPHA)
    assert starved.status == "violation" and (starved.details or {})["decision"] == "violation"


def test_entries_without_a_test_keep_their_rule_untouched() -> None:
    who = subject(aggregate="max")
    source, compare = measured(who, [1.0, 2.0] * 20), measured(who, [1.0, 2.0] * 20, "Production")
    verdict = judge_at(who, source, compare, ALPHA)
    assert verdict.judge == "scalefactor" and verdict.details is None


def test_registered_as_a_judge() -> None:
    who = subject("service.failurerate", tolerance=0.5, judge="sequential")
    verdict = judge(
        who, measured(who, np.r_[np.ones(30), np.zeros(70)]), measured(who, np.zeros(200), "Production")
    )
    assert verdict.judge == "sequential" and verdict.status == "violation"
