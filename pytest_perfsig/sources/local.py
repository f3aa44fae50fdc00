"""The local source: metrics computed from the raw samples in the embedded store."""

from __future__ import annotations

from ..errors import NoDataError, SourceError
from ..metrics import MetricKind, known_metric_ids, parse_metric, required_samples
from ..stats import aggregate, bucket_series
from ..store.sqlite import SampleColumns, SqliteStore
from .base import Measurement, MetricQuery

DEFAULT_MIN_SAMPLES = 20
BUCKET_S = 1.0


class LocalSource:
    """Answers every metric of the vocabulary from stored samples, per service and endpoint."""

    name = "local"

    def __init__(self, store: SqliteStore, min_samples: int = DEFAULT_MIN_SAMPLES) -> None:
        self.store = store
        self.min_samples = min_samples
        self._cache: dict[tuple[str, str, str | None, float, float], SampleColumns] = {}

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
        key = (query.service, query.env, query.method, query.window.start, query.window.end)
        if key not in self._cache:
            self._cache[key] = self.store.samples(
                query.service, query.env, query.window.start, query.window.end, endpoint=query.method
            )
        return self._cache[key]

    def measure(self, query: MetricQuery) -> Measurement:
        samples = self._samples(query)
        where = f"{query.env}{' ' + query.method if query.method else ''} in {query.window}"
        if len(samples) == 0:
            raise NoDataError(f"no data for {where}")
        needed = required_samples(query.aggregate, self.min_samples)
        if len(samples) < needed:
            raise NoDataError(
                f"too few samples for {where}: {len(samples)} < {needed} needed for {query.aggregate}"
            )
        return Measurement(query, self._value(query, samples), len(samples))

    def _value(self, query: MetricQuery, samples: SampleColumns) -> float:
        spec = query.aggregate
        window = query.window
        kind = query.metric.family.kind
        per_bucket = spec.percentile is not None or spec.name in {"min", "max", "median"}
        if kind is MetricKind.LATENCY:
            return aggregate(samples.latency_ms, spec)
        if kind is MetricKind.COUNT:
            return float(len(samples))
        if kind is MetricKind.RATE:
            if not per_bucket:
                return len(samples) / (max(window.duration_s, BUCKET_S) / 60.0)
            counts = bucket_series(samples.ts, window.start, window.end, BUCKET_S)
            return aggregate(counts * (60.0 / BUCKET_S), spec)
        if kind is MetricKind.FAILURE_RATE:
            failed = ~samples.success
            if not per_bucket:
                return 100.0 * float(failed.sum()) / len(samples)
            totals = bucket_series(samples.ts, window.start, window.end, BUCKET_S)
            failures = bucket_series(
                samples.ts, window.start, window.end, BUCKET_S, weights=failed.astype(float)
            )
            busy = totals > 0
            return aggregate(100.0 * failures[busy] / totals[busy], spec)
        raise SourceError(f"no rule for metric kind {kind}")  # pragma: no cover
