"""The local source: metrics computed from the raw samples in the embedded store.

Each measurement reads only what its metric needs, chunk by chunk: counts per time bin for
request and failure rates (exact, no column kept), and the latencies of one window and
endpoint for response times. So judging an hour-long run needs the memory of its largest
latency window, not of all its samples. Percentiles are exact: computed from every latency.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..aggregates import aggregate
from ..errors import NoDataError, SourceError
from ..metrics import DEFAULT_MIN_SAMPLES, MetricKind, known_metric_ids, parse_metric, required_samples
from ..windows import Measurement, MetricQuery
from .base import SampleReader

BUCKET_S = 1.0
LATENCY_WINDOWS = 2
"""Latency arrays kept between measurements: both sides of one check (avg, then p90, of the
same windows read once)."""


class FailureCounts:
    """The observations of a failure rate for the statistical judge, as exact counts: it
    behaves as the 0/1 failure flags of every request (``sum``, ``size``, ``mean``) without
    holding one value per request; ``numpy.asarray`` builds the flags when asked."""

    def __init__(self, failures: int, requests: int) -> None:
        self.failures = int(failures)
        self.requests = int(requests)

    @property
    def size(self) -> int:
        return self.requests

    def __len__(self) -> int:
        return self.requests

    def sum(self, *_: Any, **__: Any) -> int:
        return self.failures

    def mean(self, *_: Any, **__: Any) -> float:
        return self.failures / self.requests if self.requests else float("nan")

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        flags = np.zeros(self.requests, dtype=dtype or np.float64)
        flags[: self.failures] = 1
        return flags

    def __repr__(self) -> str:
        return f"FailureCounts(failures={self.failures}, requests={self.requests})"


class LocalSource:
    """Answers every metric of the vocabulary from stored samples, per service and endpoint."""

    name = "local"

    def __init__(self, store: SampleReader, min_samples: int = DEFAULT_MIN_SAMPLES) -> None:
        self.store = store
        self.min_samples = min_samples
        # Counts per bin are small (one number per second at most); latencies are not, so
        # only the last LATENCY_WINDOWS arrays are kept.
        self._counts: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        self._latencies: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def close(self) -> None:
        self._counts.clear()
        self._latencies.clear()

    def probe(self) -> None:
        """Nothing to reach: the store was opened when the gate was built."""

    def unsupported_reason(self, timeseries: str | None, smartscape: str | None) -> str | None:
        if smartscape is not None:
            return f"the {self.name} source has no topology (smartscape {smartscape!r})"
        return None

    def check_metric(self, timeseries: str) -> None:
        if parse_metric(timeseries) is None:
            raise SourceError(
                f"the {self.name} source has no metric {timeseries!r} "
                f"(known: {', '.join(known_metric_ids())})"
            )

    def _bins(self, query: MetricQuery, edges: Any) -> tuple[Any, Any]:
        """(requests, failures) per bin of ``edges`` in the query's environment and endpoint."""
        key = (query.service, query.env, query.method, query.run_ids, tuple(edges))
        if key not in self._counts:
            self._counts[key] = self.store.counts(
                query.service, query.env, edges, endpoint=query.method, run_ids=query.run_ids
            )
        return self._counts[key]

    def _latency_values(self, query: MetricQuery) -> Any:
        window = query.window
        key = (query.service, query.env, query.method, query.run_ids, window.start, window.end)
        if key in self._latencies:
            self._latencies.move_to_end(key)
            return self._latencies[key]
        while len(self._latencies) >= LATENCY_WINDOWS:
            self._latencies.popitem(last=False)  # freed before the next window is read
        values = self.store.latencies(
            query.service, query.env, window.start, window.end, endpoint=query.method, run_ids=query.run_ids
        )
        self._latencies[key] = values
        return values

    def measure(self, query: MetricQuery) -> Measurement:
        requests, _ = self._bins(query, (query.window.start, query.window.end))
        count = int(requests[0])
        runs = f" (run {', '.join(query.run_ids)})" if query.run_ids else ""
        where = f"{query.env}{' ' + query.method if query.method else ''} in {query.window}{runs}"
        if count == 0:
            raise NoDataError(f"no data for {where}")
        needed = required_samples(query.aggregate, self.min_samples)
        if count < needed:
            raise NoDataError(f"too few samples for {where}: {count} < {needed} needed for {query.aggregate}")
        value, observations = self._value(query, count)
        return Measurement(query, value, count, observations)

    def _value(self, query: MetricQuery, count: int) -> tuple[float, Any]:
        """The aggregate, and the observations a statistical judge compares."""
        import numpy as np

        spec = query.aggregate
        window = query.window
        kind = query.metric.family.kind
        per_bucket = spec.percentile is not None or spec.name in {"min", "max", "median"}
        if kind is MetricKind.LATENCY:
            values = self._latency_values(query)
            return aggregate(values, spec), values
        if kind is MetricKind.COUNT:
            return float(count), None
        # Whole one-second buckets from the window start, as ``aggregates.bucket_series``.
        whole = max(1, int((window.end - window.start) // BUCKET_S))
        edges = window.start + np.arange(whole + 1) * BUCKET_S
        if kind is MetricKind.RATE:
            totals, _ = self._bins(query, edges)
            rates = totals * (60.0 / BUCKET_S)
            if not per_bucket:
                return count / (max(window.duration_s, BUCKET_S) / 60.0), rates
            return aggregate(rates, spec), rates
        if kind is MetricKind.FAILURE_RATE:
            _, (failed,) = self._bins(query, (window.start, window.end))
            flags = FailureCounts(failed, count)
            if not per_bucket:
                return 100.0 * float(failed) / count, flags
            totals, failures = self._bins(query, edges)
            busy = totals > 0
            return aggregate(100.0 * failures[busy] / totals[busy], spec), flags
        raise SourceError(f"no rule for metric kind {kind}")  # pragma: no cover
