"""Judging reads only what a metric needs, chunk by chunk: the same numbers from a run's batches
(still running), from its column chunks (compacted, many of them) and from numpy over every
sample. The memory bound itself is shown by bench/evaluate.py, not by a timed test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pytest_perfsig import health
from pytest_perfsig.judges.mannwhitney import failure_proportions
from pytest_perfsig.metrics import parse_aggregate, parse_metric
from pytest_perfsig.sources.local import FailureCounts, LocalSource
from pytest_perfsig.store import SqliteStore
from pytest_perfsig.store import samples as samples_module
from pytest_perfsig.windows import MetricQuery, Window

T0 = 1_700_000_000.0
SVC = "Svc"
ENDPOINTS = ("/", "/a", "/b")
N = 5_000


def _columns(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.random(N)) * 60.0
    latency = rng.lognormal(2.0, 0.5, N)
    ok = rng.random(N) > 0.05
    codes = rng.integers(0, len(ENDPOINTS), N)
    return ts, latency, ok, codes


times, latencies, succeeded, codes = _columns(3)  # every sample


def _fill(store: SqliteStore, run_id: str, env: str) -> None:
    # As the capture writes them: in the order requests finish (some take seconds), 300 at a
    # time, so batches overlap in start time.
    finished = times + np.random.default_rng(5).exponential(0.5, N)
    order = np.argsort(finished)
    for at in range(0, N, 300):
        store.add_samples(
            (
                run_id,
                float(times[i]),
                SVC,
                env,
                ENDPOINTS[codes[i]],
                float(latencies[i]),
                int(succeeded[i]),
                200,
            )
            for i in order[at : at + 300]
        )


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SqliteStore, SqliteStore]]:
    """The same samples twice: as the batches of a running run, and compacted into 997-sample chunks."""
    monkeypatch.setattr(samples_module, "CHUNK_SAMPLES", 997)
    with SqliteStore(tmp_path / "rows.db") as rows, SqliteStore(tmp_path / "chunks.db") as chunks:
        _fill(rows, "run", "Staging")
        _fill(chunks, "run", "Staging")
        assert chunks.compact_run("run") == N
        yield rows, chunks


def test_a_compacted_run_is_many_bounded_chunks(stores: tuple[SqliteStore, SqliteStore]) -> None:
    _, chunks = stores
    metas = list(chunks._chunks(SVC, "Staging", T0, T0 + 60, None, None))
    assert [m.n for m in metas] == [997] * (N // 997) + [N % 997]
    assert all(a.t_max <= b.t_min for a, b in itertools.pairwise(metas))  # time order
    assert np.concatenate([chunks._chunk_columns(m, ["ts"])["ts"] for m in metas]).tolist() == times.tolist()
    batches = list(stores[0]._chunks(SVC, "Staging", T0, T0 + 60, None, None))
    assert all(m.live for m in batches) and not any(m.live for m in metas)
    assert any(a.t_max > b.t_min for a, b in itertools.pairwise(batches))  # they did overlap
    assert chunks.run_counts("run") == (N, int((~succeeded).sum()))
    assert chunks.run_window("run") == (times[0], times[-1])


def test_batches_in_no_order_of_time_compact_into_time_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch spans the whole run (rows written in no order of time): nothing can go out
    before the last batch, and the chunks still come out whole and in time order."""
    monkeypatch.setattr(samples_module, "CHUNK_SAMPLES", 401)
    order = np.random.default_rng(9).permutation(N)
    with SqliteStore(tmp_path / "shuffled.db") as store:
        for at in range(0, N, 250):
            store.add_samples(
                (
                    "run",
                    float(times[i]),
                    SVC,
                    "Staging",
                    ENDPOINTS[codes[i]],
                    float(latencies[i]),
                    int(succeeded[i]),
                    200,
                )
                for i in order[at : at + 250]
            )
        assert store.compact_run("run") == N
        metas = list(store._chunks(SVC, "Staging", T0, T0 + 60, None, None))
        assert [m.n for m in metas] == [401] * (N // 401) + [N % 401]
        columns = [store._chunk_columns(m, ["ts", "latency_ms"]) for m in metas]
    assert np.concatenate([c["ts"] for c in columns]).tolist() == times.tolist()
    assert np.concatenate([c["latency_ms"] for c in columns]).tolist() == latencies.tolist()


def test_a_request_that_hung_for_the_whole_run_holds_back_only_its_own_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request unanswered when the load stops is written last with its early start time:
    the compaction still writes chunks as it goes, not after reading every batch."""
    monkeypatch.setattr(samples_module, "CHUNK_SAMPLES", 100)
    with SqliteStore(tmp_path / "straggler.db") as store:
        for k in range(60):  # 60 writes of 50 samples, in time order
            store.add_samples([("run", T0 + k + j / 50, SVC, "Staging", "/", 1.0, 1, 200) for j in range(50)])
        store.add_samples([("run", T0 - 1, SVC, "Staging", "/", 61_000.0, 0, 0)])  # the hung request, last
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        assert store.compact_run("run") == 3001
        store._db.set_trace_callback(None)
        first_chunk = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO sample_chunks"))
        read_before = [
            s for s in statements[:first_chunk] if "FROM sample_batches WHERE run_id = 'run' AND seq" in s
        ]
        assert len(read_before) <= 6  # two chunks' worth of batches and the straggler's
        assert store.samples(SVC, "Staging", T0 - 1, T0 + 60).latency_ms[0] == 61_000.0


@pytest.mark.parametrize("endpoint", [None, "/a", "/missing"])
@pytest.mark.parametrize(("start", "end"), [(T0, T0 + 60), (T0 + 7.3, T0 + 41.9), (times[100], times[4000])])
def test_latencies_and_counts_are_those_of_every_sample(
    stores: tuple[SqliteStore, SqliteStore], endpoint: str | None, start: float, end: float
) -> None:
    inside = (times >= start) & (times <= end)
    if endpoint is not None:
        inside &= codes == (ENDPOINTS.index(endpoint) if endpoint in ENDPOINTS else -1)
    edges = start + np.arange(int((end - start) // 1.0) + 1) * 1.0
    want_requests, _ = np.histogram(times[inside], bins=edges)
    want_failures, _ = np.histogram(times[inside], bins=edges, weights=(~succeeded[inside]).astype(float))
    for store in stores:
        assert sorted(store.latencies(SVC, "Staging", start, end, endpoint=endpoint)) == sorted(
            latencies[inside]
        )
        requests, failures = store.counts(SVC, "Staging", edges, endpoint=endpoint)
        assert requests.tolist() == want_requests.tolist()
        assert failures.tolist() == want_failures.astype(int).tolist()
        total, failed = store.counts(SVC, "Staging", [start, end], endpoint=endpoint)
        assert (int(total[0]), int(failed[0])) == (int(inside.sum()), int((~succeeded[inside]).sum()))


@pytest.mark.parametrize(
    ("metric", "aggregate", "method"),
    [
        ("service.responsetime", "avg", None),
        ("service.responsetime", "p90", None),
        ("service.responsetime", "p99", None),
        ("servicemethod.responsetime", "median", "/b"),
        ("service.failurerate", "avg", None),
        ("servicemethod.failurerate", "p90", "/a"),
        ("service.requestspermin", "count", None),
        ("service.requestspermin", "p50", None),
        ("service.requests", "count", None),
    ],
)
def test_measurements_from_rows_and_from_chunks_are_the_same(
    stores: tuple[SqliteStore, SqliteStore], metric: str, aggregate: str, method: str | None
) -> None:
    parsed_metric, parsed_aggregate = parse_metric(metric), parse_aggregate(aggregate)
    assert parsed_metric is not None and parsed_aggregate is not None
    query = MetricQuery(SVC, "Staging", method, parsed_metric, parsed_aggregate, Window(T0 + 2.5, T0 + 57.5))
    rows, chunks = (LocalSource(store).measure(query) for store in stores)
    assert (rows.value, rows.samples) == (chunks.value, chunks.samples)
    if parsed_metric.family.name == "responsetime":
        inside = (times >= T0 + 2.5) & (times <= T0 + 57.5)
        if method is not None:
            inside &= codes == ENDPOINTS.index(method)
        expected = {"avg": np.mean, "median": np.median}.get(aggregate) or (
            lambda v: np.percentile(v, float(aggregate[1:]))
        )
        assert chunks.value == pytest.approx(float(expected(latencies[inside])), rel=1e-12)


def test_failure_observations_are_exact_counts_that_judge_as_flags() -> None:
    counts = FailureCounts(7, 300)
    flags = np.asarray(counts)
    assert (np.sum(counts), np.size(counts), np.mean(counts)) == (7, 300, 7 / 300)
    assert (flags.sum(), flags.size) == (7, 300)
    other = np.r_[np.ones(2), np.zeros(400)]
    assert failure_proportions(counts, other, "increase", 0.95) == failure_proportions(
        flags, other, "increase", 0.95
    )
    assert np.concatenate([counts, FailureCounts(1, 10)]).sum() == 8  # a baseline of several runs


def test_health_from_counts_is_health_from_samples(stores: tuple[SqliteStore, SqliteStore]) -> None:
    window = Window(T0 + 1.0, T0 + 55.0)
    found = health.assess(times, succeeded, window)
    for store in stores:
        requests, failures = store.counts(SVC, "Staging", health.thirds(window))
        assert health.assess_counts(requests, failures, window) == found
