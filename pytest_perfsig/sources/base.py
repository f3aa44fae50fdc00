"""The MetricSource protocol: anything that can answer "what was metric M, aggregated by A,
for this service in environment E during window W". One module per implementation; the
``sources`` package chooses one by URL."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..windows import Measurement, MetricQuery, Tags, Window


class MetricSource(Protocol):
    """Answers metric queries. Errors are SourceError / NoDataError with a message naming the
    environment and window; a source never returns a guess for missing data."""

    name: str

    def unsupported_reason(self, timeseries: str | None, smartscape: str | None) -> str | None:
        """Why this source cannot answer such an entry (the item is skipped), or None."""

    def measure(self, query: MetricQuery) -> Measurement:
        """The aggregated value; raises NoDataError / SourceError, never returns a guess."""

    def probe(self) -> None:
        """One cheap call showing that the source can answer at all (reachable, credentials
        accepted), made before any load is sent; raises SourceError naming the cause."""

    def close(self) -> None:
        """Release connections; the source is not used afterwards."""


@runtime_checkable
class TopologySource(Protocol):
    """A source that can also count topology relations (smartscape entries)."""

    def count_relationships(self, env: str, relation: str, window: Window, tags: Tags) -> Measurement:
        """Distinct entities related by ``relation`` to the environment's services in the window
        (``value``: the count, ``samples``: the services the tags matched)."""


@runtime_checkable
class ExpressionSource(Protocol):
    """A source that can also evaluate a query in its own language over a window
    (``MetricQuery.expression``: a Keptn SLI's PromQL)."""

    def measure_expression(self, query: MetricQuery) -> Measurement:
        """The expression's value at the window's end; NoDataError when it yields nothing."""


class SampleReader(Protocol):
    """What the local source needs of a store: per-bin counts and the latencies of a window,
    read without loading the other columns."""

    def counts(
        self, service: str, env: str, edges: Any, endpoint: str | None = None, run_ids: Any = None
    ) -> tuple[Any, Any]:
        """(requests, failures) per time bin, binned as ``numpy.histogram`` does."""

    def latencies(
        self,
        service: str,
        env: str,
        start: float,
        end: float,
        endpoint: str | None = None,
        run_ids: Any = None,
    ) -> Any:
        """The latencies (ms) of the samples in [start, end]."""
