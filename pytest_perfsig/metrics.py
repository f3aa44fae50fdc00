"""The metric vocabulary: which metrics a performance signature can name, their units,
default absolute tolerances, and the aggregates that reduce a window to one number.

Pure: no I/O. Dynatrace ids (``com.dynatrace.builtin:service.responsetime``) are aliases of
the short ids (``service.responsetime``), so the original monspec files load unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

DYNATRACE_PREFIX = "com.dynatrace.builtin:"


class MetricKind(Enum):
    LATENCY = "latency"  # one value per request, aggregated over the requests
    FAILURE_RATE = "failure_rate"  # share of failed requests, in percent
    RATE = "rate"  # requests per minute
    COUNT = "count"  # number of requests
    VALUE = "value"  # what a query expression returns (a Keptn SLI): its source computes it


@dataclass(frozen=True)
class MetricFamily:
    name: str
    kind: MetricKind
    unit: str
    # Added to the relative limit so that a zero or tiny baseline does not turn one
    # failed request (or a millisecond of jitter) into a violation.
    abs_tolerance: float
    description: str


FAMILIES: dict[str, MetricFamily] = {
    f.name: f
    for f in (
        MetricFamily("responsetime", MetricKind.LATENCY, "ms", 2.0, "response time of each request"),
        MetricFamily("failurerate", MetricKind.FAILURE_RATE, "%", 0.5, "share of failed requests"),
        MetricFamily("requestspermin", MetricKind.RATE, "req/min", 0.0, "throughput"),
        MetricFamily("requests", MetricKind.COUNT, "req", 0.0, "number of requests"),
    )
}

SCOPES = ("service", "servicemethod")


@dataclass(frozen=True)
class MetricId:
    """A parsed timeseries id such as ``service.responsetime``."""

    scope: str
    family: MetricFamily

    @property
    def short(self) -> str:
        return f"{self.scope}.{self.family.name}"

    def __str__(self) -> str:
        return self.short


def canonical_id(timeseries: str) -> str:
    """Strip the Dynatrace builtin prefix: the short id is what users and reports see."""
    return timeseries.removeprefix(DYNATRACE_PREFIX)


def parse_metric(timeseries: str) -> MetricId | None:
    """The metric a timeseries id names, or None when it is outside our vocabulary."""
    scope, _, family = canonical_id(timeseries).partition(".")
    if scope not in SCOPES or family not in FAMILIES:
        return None
    return MetricId(scope, FAMILIES[family])


def known_metric_ids() -> list[str]:
    return [f"{scope}.{family}" for scope in SCOPES for family in FAMILIES]


_AGGREGATE_RE = re.compile(r"^(min|max|avg|sum|median|count|p(\d{1,2}(?:\.\d+)?))$")


@dataclass(frozen=True)
class Aggregate:
    """How a window of values becomes one number: ``avg``, ``max``, ``p90``..."""

    name: str
    percentile: float | None = None

    def __str__(self) -> str:
        return self.name


def parse_aggregate(text: str) -> Aggregate | None:
    match = _AGGREGATE_RE.match(text)
    if match is None:
        return None
    if match.group(2) is not None:
        percentile = float(match.group(2))
        if not 0 < percentile < 100:
            return None
        return Aggregate(text, percentile)
    return Aggregate(text)


AGGREGATE_HELP = "min, max, avg, sum, median, count or pXX (e.g. p90, p99.9)"


def aggregate_allowed(kind: MetricKind, aggregate: Aggregate) -> bool:
    """Which aggregates mean something for a metric kind.

    Latencies take every aggregate. A failure rate is the share of failed requests over the
    window (``avg``) or over one-second buckets (min, max, median, pXX). A request rate is
    requests per minute over the window (``avg``, ``count``, ``sum`` — the original monspec
    writes ``count``) or over one-second buckets. A request count is ``count`` or ``sum``.
    """
    over_buckets = aggregate.percentile is not None or aggregate.name in {"min", "max", "median"}
    match kind:
        case MetricKind.LATENCY:
            return True
        case MetricKind.FAILURE_RATE:
            return aggregate.name == "avg" or over_buckets
        case MetricKind.RATE:
            return aggregate.name in {"avg", "count", "sum"} or over_buckets
        case MetricKind.COUNT:
            return aggregate.name in {"count", "sum"}
    return False  # VALUE: an SLI's number, which its own query aggregated already


TAIL_SAMPLES = 5
"""Samples a percentile needs beyond it: p90 is only meaningful with a few values above it."""


DEFAULT_MIN_SAMPLES = 20
"""Fewest samples a window needs to be judged at all (``--perfsig-min-samples``)."""


def required_samples(aggregate: Aggregate, floor: int) -> int:
    """Samples a window needs before an aggregate means something: pXX needs TAIL_SAMPLES
    values above it, i.e. 5 × 100 / (100 − XX) (p90: 50, p95: 100, p99: 500)."""
    if aggregate.percentile is None:
        return floor
    # round(): 100 − 99.9 is 0.0999999999999943 in binary floating point.
    return max(floor, math.ceil(round(TAIL_SAMPLES * 100.0 / (100.0 - aggregate.percentile), 6)))
