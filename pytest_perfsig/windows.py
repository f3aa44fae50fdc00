"""The windows and queries every judge and source speaks of: when (``Window``), what
(``MetricQuery``) and what was found (``Measurement``). Pure domain types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .metrics import Aggregate, MetricFamily, MetricId, MetricKind


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


Tags = tuple[tuple[str, str, str | None], ...]
"""An environment's monspec tags, (context, key, value)."""


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
    # A query in the source's own language (PromQL: a Keptn SLI) instead of ``metric`` and
    # ``aggregate``, which are then EXPRESSION_METRIC and EXPRESSION_VALUE. Only sources that
    # can evaluate expressions (sources.ExpressionSource) are asked.
    expression: str | None = None


EXPRESSION_METRIC = MetricId(
    "sli", MetricFamily("value", MetricKind.VALUE, "", 0.0, "the value of a query expression")
)
EXPRESSION_VALUE = Aggregate("value")


@dataclass(frozen=True)
class Measurement:
    query: MetricQuery
    value: float
    samples: int
    # The observations a statistical judge compares: latencies, per-bucket rates, or 0/1
    # failure flags; None where the source has no per-observation data.
    observations: Any = None
    # How a baseline made of stored runs was formed ("run R", "median of 3 of 3 runs: ..."):
    # None when it is simply the query's window.
    baseline: str | None = None

    @property
    def unit(self) -> str:
        return self.query.metric.family.unit
