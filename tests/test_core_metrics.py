"""The metric vocabulary, aggregates, windows and verdict helpers: the numbers every judge
starts from, checked on small hand-worked inputs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pytest_perfsig.aggregates import aggregate, bucket_series
from pytest_perfsig.metrics import (
    Aggregate,
    MetricKind,
    aggregate_allowed,
    parse_aggregate,
    parse_metric,
    required_samples,
)
from pytest_perfsig.monspec import Comparison, SignatureEntry
from pytest_perfsig.verdict import Subject, Verdict, fmt, measured_fields, not_judged
from pytest_perfsig.windows import Measurement, MetricQuery, Window

# ---------------------------------------------------------------------------- aggregates

AGGREGATES = ["min", "max", "avg", "sum", "median", "count", "p50", "p90", "p99.9"]


def spec(text: str) -> Aggregate:
    parsed = parse_aggregate(text)
    assert parsed is not None, text
    return parsed


# [2, 4, 4, 5, 7, 9, 100]: sorted, 7 values; numpy's linear percentile at p·6/100.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("min", 2.0),
        ("max", 100.0),
        ("avg", 131.0 / 7),
        ("sum", 131.0),
        ("median", 5.0),
        ("count", 7.0),
        ("p50", 5.0),
        ("p90", 9.0 + 0.4 * 91.0),  # position 5.4: 9 + 0.4 × (100 − 9)
        ("p25", 4.0),  # position 1.5: between 4 and 4
        ("p10", 2.0 + 0.6 * 2.0),  # position 0.6: 2 + 0.6 × (4 − 2)
    ],
)
def test_aggregate_hand_worked(name: str, expected: float) -> None:
    assert aggregate([9, 2, 100, 4, 7, 4, 5], spec(name)) == pytest.approx(expected)


def test_aggregate_of_failure_flags_given_as_booleans() -> None:
    flags = [True, False, True, True]
    assert aggregate(flags, spec("avg")) == 0.75
    assert aggregate(flags, spec("sum")) == 3.0
    assert aggregate(flags, spec("p50")) == 1.0
    assert aggregate(flags, spec("p25")) == 0.75


def test_aggregate_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^aggregate of no values$"):
        aggregate([], spec("avg"))


def test_aggregate_unknown_name_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^unknown aggregate 'mode'$"):
        aggregate([1.0], Aggregate("mode"))


def test_bucket_series_counts_whole_buckets() -> None:
    # [10, 14] in 1-s buckets: 4 whole buckets; 14.0 lands in the last one (closed right edge).
    ts = [10.0, 10.5, 11.2, 13.9, 14.0, 14.5]
    assert bucket_series(ts, 10.0, 14.5, 1.0).tolist() == [2, 1, 0, 2]


def test_bucket_series_wider_buckets_and_weights() -> None:
    # [0, 7] in 2-s buckets: 3 whole buckets [0, 2), [2, 4), [4, 6]; 6.5 falls outside.
    ts = [0.0, 1.0, 2.5, 3.9, 5.0, 6.0, 6.5]
    assert bucket_series(ts, 0.0, 7.0, 2.0).tolist() == [2, 2, 2]
    weights = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert bucket_series(ts, 0.0, 7.0, 2.0, weights=weights).tolist() == [1.0, 2.0, 1.0]


def test_bucket_series_window_shorter_than_a_bucket_is_one_bucket() -> None:
    assert bucket_series([5.1, 5.2], 5.0, 5.5, 1.0).tolist() == [2]


# ---------------------------------------------------------------------------- vocabulary


def test_parse_aggregate_percentiles() -> None:
    assert spec("p90") == Aggregate("p90", 90.0)
    assert spec("p99.9") == Aggregate("p99.9", 99.9)
    assert spec("p0.5") == Aggregate("p0.5", 0.5)
    assert spec("avg") == Aggregate("avg")
    for bad in ("p0", "p00", "p0.0", "p100", "p", "avg ", "P90", "mean"):
        assert parse_aggregate(bad) is None, bad


def test_parse_metric() -> None:
    metric = parse_metric("com.dynatrace.builtin:servicemethod.failurerate")
    assert metric is not None and (metric.scope, metric.family.name) == ("servicemethod", "failurerate")
    assert parse_metric("service.cpu") is None
    assert parse_metric("host.responsetime") is None


ALLOWED = {
    MetricKind.LATENCY: set(AGGREGATES),
    MetricKind.FAILURE_RATE: {"avg", "min", "max", "median", "p50", "p90", "p99.9"},
    MetricKind.RATE: {"avg", "count", "sum", "min", "max", "median", "p50", "p90", "p99.9"},
    MetricKind.COUNT: {"count", "sum"},
    MetricKind.VALUE: set(),  # an SLI's value: its PromQL aggregated it
}


@pytest.mark.parametrize("kind", list(MetricKind))
@pytest.mark.parametrize("name", AGGREGATES)
def test_aggregate_allowed(kind: MetricKind, name: str) -> None:
    assert aggregate_allowed(kind, spec(name)) is (name in ALLOWED[kind])


@pytest.mark.parametrize(
    ("aggregate_text", "floor", "expected"),
    [
        ("avg", 20, 20),
        ("max", 3, 3),
        ("p90", 20, 50),  # 5 × 100 / 10
        ("p90", 60, 60),
        ("p33", 1, 8),  # 5 × 100 / 67 = 7.46: rounded up
        ("p80", 1, 25),
        ("p99.9", 1, 5000),  # 5 × 100 / 0.1, not 5001 from binary rounding
    ],
)
def test_required_samples(aggregate_text: str, floor: int, expected: int) -> None:
    assert required_samples(spec(aggregate_text), floor) == expected


# ---------------------------------------------------------------------------- windows


@pytest.fixture
def new_york_time() -> Iterator[None]:
    """A machine whose local zone is not UTC (POSIX rule: no zone database needed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "EST+5")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("new_york_time")
def test_window_text_is_utc_whatever_the_local_zone() -> None:
    assert time.localtime(0).tm_hour == 19  # the zone really is not UTC
    assert str(Window(1_700_006_390.0, 1_700_006_410.0)) == "2023-11-14 23:59:50–2023-11-15 00:00:10 UTC"


# ---------------------------------------------------------------------------- verdicts


def test_fmt_boundaries() -> None:
    assert fmt(999.5, "ms") == "1000 ms"  # .3g would print 1e+03
    assert fmt(-999.5) == "-1000"
    assert fmt(1234.0) == "1234"
    assert fmt(0.0099, "%") == "9.90e-03 %"
    assert fmt(0.0, "ms") == "0.0 ms"
    assert fmt(0.0) == "0.0"
    assert fmt(None) == "n/a"
    assert fmt(12.345) == "12.3"


def _query(env: str, window: Window) -> MetricQuery:
    metric = parse_metric("service.responsetime")
    assert metric is not None
    return MetricQuery("S", env, None, metric, spec("avg"), window)


def test_measured_fields_carry_both_sides_and_the_baseline() -> None:
    source = Measurement(_query("Staging", Window(10.0, 20.0)), 5.0, 30)
    compare = Measurement(_query("Production", Window(0.0, 10.0)), 4.0, 40, baseline="run R")
    assert measured_fields(source, compare) == {
        "source_value": 5.0,
        "source_samples": 30,
        "source_window": Window(10.0, 20.0),
        "compare_value": 4.0,
        "compare_samples": 40,
        "compare_window": Window(0.0, 10.0),
        "baseline": "run R",
    }
    assert measured_fields(None, None) == {}


def test_not_judged_names_the_judge_and_keeps_what_was_measured() -> None:
    entry = SignatureEntry.model_validate({"timeseries": "service.responsetime"})
    comparison = Comparison.model_validate(
        {"name": "C", "source": "Staging", "compare": "Production", "judge": "mannwhitney"}
    )
    subject = Subject(entry, comparison, "/api", "ms", MetricKind.LATENCY, 2.0)
    source = Measurement(_query("Staging", Window(10.0, 20.0)), 5.0, 30)
    compare = Measurement(_query("Production", Window(0.0, 10.0)), 4.0, 40, baseline="run R")
    verdict = not_judged(subject, "error", "too few samples", source=source, compare=compare, limit=9.0)
    assert verdict.judge == "mannwhitney"
    assert verdict.message == "/api service.responsetime avg: too few samples"
    assert (verdict.source_value, verdict.source_samples, verdict.source_window) == (
        5.0,
        30,
        Window(10.0, 20.0),
    )
    assert (verdict.compare_value, verdict.compare_samples, verdict.baseline) == (4.0, 40, "run R")
    assert verdict.limit == 9.0


def test_verdict_record_round_trip_without_windows() -> None:
    verdict = Verdict("pass", "service.responsetime", "avg", None, "ms", "Staging", "Production", "ok")
    record = verdict.to_record()
    assert record["source_window"] is None
    assert Verdict.from_record(record) == verdict
    record["source_window"] = {"start": "yesterday", "end": 1}
    assert Verdict.from_record(record).source_window is None
