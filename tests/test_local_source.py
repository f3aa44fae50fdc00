"""LocalSource: metrics computed from synthetic samples in a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pytest_perfsig.errors import NoDataError, SourceError
from pytest_perfsig.metrics import parse_aggregate, parse_metric, required_samples
from pytest_perfsig.sources.local import LocalSource
from pytest_perfsig.store.sqlite import SampleRow, SqliteStore
from pytest_perfsig.windows import MetricQuery, Window

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
W = Window(T0, T0 + 10.0)  # ten one-second buckets
W_TEXT = "2023-11-14 22:13:20–22:13:30 UTC"
SVC = "SampleJSonService"
INVOKE, OTHER = "/api/invoke", "/api/other"

# Staging, service SVC: 2 requests in each of the first nine seconds, 30 in the tenth.
COUNTS = [2] * 9 + [30]
N = sum(COUNTS)  # 48


def _staging_rows() -> tuple[list[SampleRow], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    latencies = rng.gamma(2.0, 25.0, size=N)
    rows: list[SampleRow] = []
    endpoints: list[str] = []
    i = 0
    for second, count in enumerate(COUNTS):
        for j in range(count):
            endpoint = INVOKE if (j % 2 == 0 if second < 9 else j < 20) else OTHER
            # failures: second 0, request 1 (1 of 2 → 50 %); second 9, requests 0-2 (3 of 30 → 10 %)
            failed = (second == 0 and j == 1) or (second == 9 and j < 3)
            ts = T0 + second + 0.02 + 0.03 * j
            rows.append(
                (
                    "run-s",
                    ts,
                    SVC,
                    "Staging",
                    endpoint,
                    float(latencies[i]),
                    0 if failed else 1,
                    500 if failed else 200,
                )
            )
            endpoints.append(endpoint)
            i += 1
    return rows, latencies, np.asarray(endpoints)


ROWS, LATENCIES, ENDPOINTS = _staging_rows()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "perfsig.db") as db:
        db.add_samples(ROWS)
        # noise that must never be counted for (SVC, Staging, W)
        db.add_samples(
            [("run-p", T0 + 0.5 + 0.3 * k, SVC, "Production", INVOKE, 1000.0, 0, 500) for k in range(25)]
        )
        db.add_samples(
            [
                ("run-o", T0 + 0.5 + 0.3 * k, "OtherService", "Staging", INVOKE, 2000.0, 0, 500)
                for k in range(25)
            ]
        )
        db.add_samples(
            [
                ("run-s", T0 - 0.001, SVC, "Staging", INVOKE, 5000.0, 0, 500),
                ("run-s", T0 + 10.001, SVC, "Staging", INVOKE, 5000.0, 0, 500),
                ("run-s", T0 - 3600.0, SVC, "Staging", INVOKE, 5000.0, 0, 500),
            ]
        )
        yield db


def q(
    metric: str,
    aggregate: str,
    env: str = "Staging",
    method: str | None = None,
    window: Window = W,
    service: str = SVC,
) -> MetricQuery:
    parsed_metric, parsed_aggregate = parse_metric(metric), parse_aggregate(aggregate)
    assert parsed_metric is not None and parsed_aggregate is not None
    return MetricQuery(service, env, method, parsed_metric, parsed_aggregate, window)


def test_data_is_what_the_tests_assume() -> None:
    assert N == 48 == len(ROWS)
    assert sum(1 for r in ROWS if r[6] == 0) == 4
    assert (ENDPOINTS == INVOKE).sum() == 29
    assert all(W.start <= r[1] < W.end for r in ROWS)


# ---------------------------------------------------------------------------- response time


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("min", float(LATENCIES.min())),
        ("max", float(LATENCIES.max())),
        ("median", float(np.median(LATENCIES))),
        ("p80", float(np.percentile(LATENCIES, 80))),  # 48 samples: p90 would need 50
        ("p50", float(np.percentile(LATENCIES, 50))),
        ("count", 48.0),
    ],
)
def test_responsetime_exact_aggregates(store: SqliteStore, aggregate: str, expected: float) -> None:
    m = LocalSource(store).measure(q("service.responsetime", aggregate))
    assert m.value == expected
    assert m.samples == 48
    assert m.unit == "ms"


def test_responsetime_avg_and_sum(store: SqliteStore) -> None:
    source = LocalSource(store)
    assert source.measure(q("service.responsetime", "avg")).value == pytest.approx(
        float(LATENCIES.mean()), rel=1e-12
    )
    assert source.measure(q("service.responsetime", "sum")).value == pytest.approx(
        float(LATENCIES.sum()), rel=1e-12
    )


def test_noise_latencies_are_far_away(store: SqliteStore) -> None:
    # the 1000/2000/5000 ms noise rows would show in max if they leaked in
    assert LATENCIES.max() < 1000
    assert LocalSource(store).measure(q("service.responsetime", "max")).value < 1000


# ---------------------------------------------------------------------------- failure rate


def test_failurerate_avg_is_percent_of_requests(store: SqliteStore) -> None:
    m = LocalSource(store).measure(q("service.failurerate", "avg"))
    assert m.value == 100.0 * 4 / 48
    assert m.unit == "%"


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("max", 50.0),  # second 0: 1 of 2
        ("min", 0.0),
        ("median", 0.0),
        # per-second rates sorted: eight 0 %, 10 %, 50 % → p80 = 0 + 0.2 × (10 − 0)
        ("p80", 2.0),
    ],
)
def test_failurerate_over_one_second_buckets(store: SqliteStore, aggregate: str, expected: float) -> None:
    assert LocalSource(store).measure(q("service.failurerate", aggregate)).value == pytest.approx(
        expected, abs=1e-9
    )


def test_failurerate_buckets_without_requests_are_left_out(tmp_path: Path) -> None:
    # 25 requests all in second 3, 5 of them failed: the busy buckets only → min = max = 20 %
    with SqliteStore(tmp_path / "s.db") as db:
        db.add_samples(
            [
                ("r", T0 + 3 + 0.01 * k, SVC, "Staging", INVOKE, 10.0, 0 if k < 5 else 1, 200)
                for k in range(25)
            ]
        )
        source = LocalSource(db)
        assert source.measure(q("service.failurerate", "min")).value == 20.0
        assert source.measure(q("service.failurerate", "max")).value == 20.0


# ---------------------------------------------------------------------------- throughput


def test_requestspermin_count_is_requests_per_window_minute(store: SqliteStore) -> None:
    m = LocalSource(store).measure(q("service.requestspermin", "count"))
    assert m.value == pytest.approx(48 / (10 / 60), abs=1e-9)  # 288
    assert m.value == pytest.approx(288.0, abs=1e-9)
    assert m.unit == "req/min"
    assert LocalSource(store).measure(q("service.requestspermin", "avg")).value == pytest.approx(
        288.0, abs=1e-9
    )


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("p50", 120.0),  # nine seconds with 2 requests = 120 req/min, one with 30 = 1800 req/min
        ("median", 120.0),
        ("min", 120.0),
        ("max", 1800.0),
    ],
)
def test_requestspermin_over_one_second_buckets(store: SqliteStore, aggregate: str, expected: float) -> None:
    assert LocalSource(store).measure(q("service.requestspermin", aggregate)).value == pytest.approx(
        expected, abs=1e-9
    )


def test_requests_count(store: SqliteStore) -> None:
    source = LocalSource(store)
    assert source.measure(q("service.requests", "count")).value == 48.0
    assert source.measure(q("service.requests", "sum")).value == 48.0
    assert source.measure(q("service.requests", "count", env="Production")).value == 25.0
    assert source.measure(q("service.requests", "count", service="OtherService")).value == 25.0


# ---------------------------------------------------------------------------- filtering


def test_servicemethod_filters_by_endpoint(store: SqliteStore) -> None:
    source = LocalSource(store)
    invoke = LATENCIES[ENDPOINTS == INVOKE]
    m = source.measure(q("servicemethod.responsetime", "avg", method=INVOKE))
    assert m.samples == 29
    assert m.value == pytest.approx(float(invoke.mean()), rel=1e-12)
    assert source.measure(q("servicemethod.responsetime", "max", method=INVOKE)).value == float(invoke.max())
    # second 9: requests 0-2 failed, all on /api/invoke → 3 of 29
    assert source.measure(q("servicemethod.failurerate", "avg", method=INVOKE)).value == 100.0 * 3 / 29
    assert source.measure(q("servicemethod.requests", "count", method=INVOKE)).value == 29.0
    # /api/other: 19 requests, 1 failure (second 0, request 1)
    other = LocalSource(store, min_samples=1).measure(q("servicemethod.failurerate", "avg", method=OTHER))
    assert (other.samples, other.value) == (19, 100.0 * 1 / 19)


def test_service_and_env_are_separated(store: SqliteStore) -> None:
    source = LocalSource(store)
    prod = source.measure(q("service.failurerate", "avg", env="Production"))
    assert (prod.value, prod.samples) == (100.0, 25)
    assert source.measure(q("service.responsetime", "min", env="Production")).value == 1000.0
    other = source.measure(q("service.responsetime", "avg", service="OtherService"))
    assert (other.value, other.samples) == (2000.0, 25)
    assert source.measure(q("service.failurerate", "avg")).value == 100.0 * 4 / 48


def test_window_boundaries_are_inclusive_and_tight(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "edge.db") as db:
        db.add_samples(
            [
                ("r", ts, SVC, "Staging", INVOKE, 1.0, 1, 200)
                for ts in (T0 - 0.001, T0, T0 + 5.0, T0 + 10.0, T0 + 10.001)
            ]
        )
        m = LocalSource(db, min_samples=1).measure(q("service.requests", "count"))
        assert (m.value, m.samples) == (3.0, 3)
        later = LocalSource(db, min_samples=1).measure(
            q("service.requests", "count", window=W.shifted(-0.002))
        )
        assert later.value == 3.0  # T0 + 0.002 .. T0 + 10.002: T0 + 5, T0 + 10, T0 + 10.001


def test_one_sample_just_outside_is_excluded(store: SqliteStore) -> None:
    # the store holds Staging samples at T0 − 1 ms and T0 + 10 s + 1 ms (5000 ms, failed)
    m = LocalSource(store).measure(q("service.responsetime", "count"))
    assert m.value == 48.0
    wider = Window(T0 - 0.001, T0 + 10.001)
    assert LocalSource(store).measure(q("service.responsetime", "count", window=wider)).value == 50.0


# ---------------------------------------------------------------------------- not enough data


def test_empty_window_raises_no_data(store: SqliteStore) -> None:
    with pytest.raises(NoDataError) as info:
        LocalSource(store).measure(q("service.responsetime", "avg", env="Production", window=W.shifted(3600)))
    assert str(info.value) == "no data for Production in 2023-11-14 21:13:20–21:13:30 UTC"
    assert str(info.value).startswith("no data for Production in")


def test_empty_method_window_names_the_method(store: SqliteStore) -> None:
    with pytest.raises(NoDataError) as info:
        LocalSource(store).measure(q("servicemethod.responsetime", "avg", method="/api/missing"))
    assert str(info.value) == f"no data for Staging /api/missing in {W_TEXT}"


def test_too_few_samples(store: SqliteStore) -> None:
    with pytest.raises(NoDataError) as info:
        LocalSource(store, min_samples=49).measure(q("service.responsetime", "avg"))
    assert str(info.value) == f"too few samples for Staging in {W_TEXT}: 48 < 49 needed for avg"
    assert LocalSource(store, min_samples=48).measure(q("service.responsetime", "avg")).samples == 48


def test_too_few_samples_default_floor_is_20(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "few.db") as db:
        db.add_samples([("r", T0 + k, SVC, "Staging", INVOKE, 1.0, 1, 200) for k in range(5)])
        with pytest.raises(NoDataError, match=r"too few samples for Staging in .*: 5 < 20 needed for avg$"):
            LocalSource(db).measure(q("service.responsetime", "avg"))


def test_p90_needs_50_samples(tmp_path: Path) -> None:
    p90 = parse_aggregate("p90")
    assert p90 is not None and required_samples(p90, 20) == 50
    with SqliteStore(tmp_path / "p90.db") as db:
        db.add_samples([("r", T0 + 0.1 * k, SVC, "Staging", INVOKE, float(k), 1, 200) for k in range(49)])
        with pytest.raises(NoDataError) as info:
            LocalSource(db, min_samples=1).measure(q("service.responsetime", "p90"))
        assert str(info.value) == f"too few samples for Staging in {W_TEXT}: 49 < 50 needed for p90"
        db.add_samples([("r", T0 + 9.9, SVC, "Staging", INVOKE, 49.0, 1, 200)])
        m = LocalSource(db, min_samples=1).measure(q("service.responsetime", "p90"))
        assert (m.samples, m.value) == (50, pytest.approx(44.1, abs=1e-9))  # 0..49: p90 = 44.1


@pytest.mark.parametrize(
    ("aggregate", "floor", "expected"),
    [
        ("avg", 20, 20),
        ("p90", 20, 50),
        ("p90", 60, 60),
        ("p95", 1, 100),
        ("p99", 1, 500),
        ("p50", 1, 10),
    ],
)
def test_required_samples(aggregate: str, floor: int, expected: int) -> None:
    spec = parse_aggregate(aggregate)
    assert spec is not None
    assert required_samples(spec, floor) == expected


def test_p999_needs_5000_samples() -> None:
    spec = parse_aggregate("p99.9")
    assert spec is not None
    assert required_samples(spec, 1) == 5000


# ---------------------------------------------------------------------------- source surface


def test_unsupported_and_unknown_metrics(store: SqliteStore) -> None:
    source = LocalSource(store)
    assert source.unsupported_reason("service.responsetime", None) is None
    assert source.unsupported_reason(None, "toRelationships:calls") == (
        "the local source has no topology (smartscape 'toRelationships:calls')"
    )
    source.check_metric("com.dynatrace.builtin:service.failurerate")
    with pytest.raises(SourceError, match=r"the local source has no metric 'service\.cpu' \(known: "):
        source.check_metric("service.cpu")


# ---------------------------------------------------------------------------- Window


def test_window_shifted_and_duration() -> None:
    shifted = W.shifted(86400)
    assert shifted == Window(T0 - 86400, T0 + 10.0 - 86400)
    assert shifted.duration_s == 10.0
    assert W.shifted(0) == W
    assert W.shifted(-60) == Window(T0 + 60, T0 + 70)


def test_window_str() -> None:
    assert str(W) == W_TEXT
    assert str(W.shifted(86400)) == "2023-11-13 22:13:20–22:13:30 UTC"
    # across midnight UTC the end shows its date
    assert str(Window(1_700_006_390.0, 1_700_006_410.0)) == "2023-11-14 23:59:50–2023-11-15 00:00:10 UTC"
