"""The local source: metrics computed from the raw samples in the embedded store."""

from __future__ import annotations

from typing import Any

from ..aggregates import aggregate, bucket_series
from ..errors import NoDataError, SourceError
from ..metrics import DEFAULT_MIN_SAMPLES, MetricKind, known_metric_ids, parse_metric, required_samples
from ..store.sqlite import SampleColumns
from ..windows import Measurement, MetricQuery
from .base import SampleReader

BUCKET_S = 1.0


class LocalSource:
    """Answers every metric of the vocabulary from stored samples, per service and endpoint."""

    name = "local"

    def __init__(self, store: SampleReader, min_samples: int = DEFAULT_MIN_SAMPLES) -> None:
        self.store = store
        self.min_samples = min_samples
        self._cache: dict[tuple[Any, ...], SampleColumns] = {}

    def close(self) -> None:
        self._cache.clear()

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

    def _samples(self, query: MetricQuery) -> SampleColumns:
        # One read per environment and window; endpoints are filtered in memory.
        key = (query.service, query.env, query.window.start, query.window.end, query.run_ids)
        if key not in self._cache:
            self._cache[key] = self.store.samples(
                query.service, query.env, query.window.start, query.window.end, run_ids=query.run_ids
            )
        columns = self._cache[key]
        return columns.only(query.method) if query.method is not None else columns

    def measure(self, query: MetricQuery) -> Measurement:
        samples = self._samples(query)
        runs = f" (run {', '.join(query.run_ids)})" if query.run_ids else ""
        where = f"{query.env}{' ' + query.method if query.method else ''} in {query.window}{runs}"
        if len(samples) == 0:
            raise NoDataError(f"no data for {where}")
        needed = required_samples(query.aggregate, self.min_samples)
        if len(samples) < needed:
            raise NoDataError(
                f"too few samples for {where}: {len(samples)} < {needed} needed for {query.aggregate}"
            )
        value, observations = self._value(query, samples)
        return Measurement(query, value, len(samples), observations)

    def _value(self, query: MetricQuery, samples: SampleColumns) -> tuple[float, Any]:
        """The aggregate, and the observations a statistical judge compares."""
        spec = query.aggregate
        window = query.window
        kind = query.metric.family.kind
        per_bucket = spec.percentile is not None or spec.name in {"min", "max", "median"}
        if kind is MetricKind.LATENCY:
            return aggregate(samples.latency_ms, spec), samples.latency_ms
        if kind is MetricKind.COUNT:
            return float(len(samples)), None
        if kind is MetricKind.RATE:
            rates = bucket_series(samples.ts, window.start, window.end, BUCKET_S) * (60.0 / BUCKET_S)
            if not per_bucket:
                return len(samples) / (max(window.duration_s, BUCKET_S) / 60.0), rates
            return aggregate(rates, spec), rates
        if kind is MetricKind.FAILURE_RATE:
            failed = ~samples.success
            flags = failed.astype(float)
            if not per_bucket:
                return 100.0 * float(failed.sum()) / len(samples), flags
            totals = bucket_series(samples.ts, window.start, window.end, BUCKET_S)
            failures = bucket_series(samples.ts, window.start, window.end, BUCKET_S, weights=flags)
            busy = totals > 0
            return aggregate(100.0 * failures[busy] / totals[busy], spec), flags
        raise SourceError(f"no rule for metric kind {kind}")  # pragma: no cover
