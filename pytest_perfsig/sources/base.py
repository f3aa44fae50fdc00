"""The MetricSource protocol: anything that can answer "what was metric M, aggregated by A,
for this service in environment E during window W". One module per implementation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..metrics import Aggregate, MetricId


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def shifted(self, seconds: float) -> Window:
        """The same window ``seconds`` earlier."""
        return Window(self.start - seconds, self.end - seconds)

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def __str__(self) -> str:
        start = datetime.fromtimestamp(self.start, UTC)
        end = datetime.fromtimestamp(self.end, UTC)
        end_fmt = "%H:%M:%S" if start.date() == end.date() else "%Y-%m-%d %H:%M:%S"
        return f"{start:%Y-%m-%d %H:%M:%S}–{end.strftime(end_fmt)} UTC"


@dataclass(frozen=True)
class MetricQuery:
    service: str
    env: str
    method: str | None
    metric: MetricId
    aggregate: Aggregate
    window: Window
    # Only the samples of these runs (a stored baseline), instead of all in the window.
    run_ids: tuple[str, ...] | None = None
    # The environment's monspec tags, (context, key, value): how a monitoring system
    # identifies the service there. Each source maps them to its own selectors.
    tags: tuple[tuple[str, str, str | None], ...] = ()


@dataclass(frozen=True)
class Measurement:
    query: MetricQuery
    value: float
    samples: int
    # The observations a statistical judge compares: latencies, per-bucket rates, or 0/1
    # failure flags; None where the source has no per-observation data.
    observations: Any = None

    @property
    def unit(self) -> str:
        return self.query.metric.family.unit


class MetricSource(Protocol):
    """Answers metric queries. Implementations: local (stored samples), prometheus, ...
    Errors are SourceError / NoDataError with a message naming the environment and window;
    a source never returns a guess for missing data."""

    name: str

    def unsupported_reason(self, timeseries: str | None, smartscape: str | None) -> str | None:
        """Why this source cannot answer such an entry (the item is skipped), or None."""

    def measure(self, query: MetricQuery) -> Measurement:
        """The aggregated value; raises NoDataError / SourceError, never returns a guess."""
